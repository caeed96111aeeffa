package doas

import (
	"slices"
	"testing"
)

func TestArgs(t *testing.T) {
	tr := &Transport{User: "www", Opts: Options{Password: "secret"}}
	if got := tr.Args("S"); !slices.Equal(got, []string{"-u", "www", "--", "/bin/sh", "-c", "S"}) {
		t.Errorf("args %q", got)
	}
}
