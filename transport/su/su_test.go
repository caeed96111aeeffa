package su

import (
	"slices"
	"testing"
)

func TestArgs(t *testing.T) {
	tr := &Transport{User: "bob", Opts: Options{Password: "secret"}}
	if got := tr.Args("S"); !slices.Equal(got, []string{"bob", "-c", "exec /bin/sh -c 'S'"}) {
		t.Errorf("args %q", got)
	}
	tr.Opts.Login = true
	if got := tr.Args("it's"); !slices.Equal(got, []string{"-l", "bob", "-c", `exec /bin/sh -c 'it'\''s'`}) {
		t.Errorf("login args %q", got)
	}
}
