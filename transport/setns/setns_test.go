package setns

import (
	"slices"
	"testing"
)

func TestArgs(t *testing.T) {
	tr := &Transport{By: "pid", Target: "42"}
	if got := tr.Args(42, "S"); !slices.Equal(got, []string{"--target", "42", "--all", "--root", "--wd", "--", "/bin/sh", "-c", "S"}) {
		t.Errorf("all namespaces: %q", got)
	}
	tr.Opts.Namespaces = []string{"net", "uts"}
	if got := tr.Args(42, "S"); !slices.Equal(got, []string{"--target", "42", "--net", "--uts", "--", "/bin/sh", "-c", "S"}) {
		t.Errorf("net, uts: %q", got)
	}
	tr.Opts.Namespaces = []string{"mnt"}
	if got := tr.Args(42, "S"); !slices.Equal(got, []string{"--target", "42", "--mount", "--root", "--wd", "--", "/bin/sh", "-c", "S"}) {
		t.Errorf("mnt: %q", got)
	}
}
