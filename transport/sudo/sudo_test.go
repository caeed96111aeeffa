package sudo

import (
	"strings"
	"testing"
)

func TestArgs(t *testing.T) {
	tr := &Transport{User: "postgres"}
	got := strings.Join(tr.Args("S"), " ")
	if got != "-p "+prompt+" -H -u postgres -- /bin/sh -c S" {
		t.Errorf("default args %q", got)
	}
	tr.Opts = Options{PreserveEnv: true, Login: true, KeepHome: true, Password: "secret"}
	got = strings.Join(tr.Args("S"), " ")
	if got != "-p "+prompt+" -E -i -u postgres -- /bin/sh -c S" || strings.Contains(got, "secret") {
		t.Errorf("args %q", got)
	}
}
