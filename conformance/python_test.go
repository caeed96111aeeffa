package conformance

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
)

// A master written in Python with code generated from idl/ by the Thrift
// compiler boots a real agent and calls it: the IDL is all another
// language needs.
func TestPythonClientFromIDL(t *testing.T) {
	testhosts.Need(t, "thrift", "/usr/bin/python3")
	if exec.Command("/usr/bin/python3", "-c", "import thrift").Run() != nil {
		testhosts.Need(t, "python3-thrift (import thrift)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("thrift", "--gen", "py", "-out", dir, "../idl/mitogen.thrift").CombinedOutput(); err != nil {
		t.Fatalf("thrift --gen py: %v\n%s", err, out)
	}
	out, err := exec.Command("/usr/bin/python3", "testdata/python_master.py", mitogenBin, dir).CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("python master: %v", err)
	}
	for _, want := range []string{"boot ok", "ping ok", "echo ok", "declared exception ok", "agent exited with 0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("missing %q", want)
		}
	}
}
