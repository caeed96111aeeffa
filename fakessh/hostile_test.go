package fakessh_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seed-a176d0ab/mitogen-go/core"
)

// TestHostileProgramCannotHarmTheRun runs, under fakessh, a program that
// joins the run as an ssh would and then sends every hostile payload a child
// context can (containers declaring 2^31-1 elements to the master's FakeSSH
// handle and FORWARD_LOG, DEL_ROUTE/ADD_ROUTE for the master, its own
// ancestors, siblings and unallocated IDs, ALLOCATE_ID floods, SHUTDOWN and
// calls to the master, junk to dynamic handles). The master must neither
// die, nor hang, nor be re-routed: the next ssh of the same run succeeds.
func TestHostileProgramCannotHarmTheRun(t *testing.T) {
	hostile := filepath.Join(t.TempDir(), "hostile")
	build := exec.Command("go", "build", "-o", hostile, "./testdata/hostile")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the hostile program: %v\n%s", err, out)
	}
	forChains(t, func(t *testing.T, dest *core.Context) {
		script := hostile + " && ssh h echo first-ok && " + hostile + " && ssh h echo second-ok"
		st, out, errs := runUnder(t, dest, nil, nil, "sh", "-c", script)
		if st != 0 || out != "first-ok\nsecond-ok\n" {
			t.Fatalf("after the hostile program: status %d, stdout %q, stderr:\n%s", st, out, errs)
		}
		if strings.Contains(errs, "hostile:") {
			t.Fatalf("the hostile program could not run its attacks:\n%s", errs)
		}
		// The master still starts new contexts and serves them.
		if st, out, errs := runUnder(t, dest, nil, nil, "ssh", "h", "echo again"); st != 0 || out != "again\n" {
			t.Fatalf("a new run after the hostile one: status %d, stdout %q, stderr:\n%s", st, out, errs)
		}
	})
}
