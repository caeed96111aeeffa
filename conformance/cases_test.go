package conformance

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
)

// The protocol's conformance cases live as data in cases/*.json and are
// run by three independent masters: the Go runner (gorunner_test.go), and
// runners in Python and Node.js that use only code the stock Thrift
// compiler generated from idl/mitogen.thrift. Each case gets a fresh
// `mitogen agent` child booted as context 1.

const casesDir = "cases"

// agentMemoryKiB bounds the agent's address space (ulimit -v), so that a
// case that makes an agent allocate for a hostile declared size fails
// fast instead of eating the machine's memory. An idle Go agent reserves
// about 1.5 GiB of address space; the cases themselves need little.
const agentMemoryKiB = 3 << 20

var (
	agentOnce sync.Once
	agentPath string
	agentErr  error
)

// limitedAgent returns a script that execs the mitogen binary under test
// (same PID, so runners end it by PID) with agentMemoryKiB as its limit.
// MITOGEN_CONFORMANCE_AGENT names another mitogen binary to test instead.
func limitedAgent(t *testing.T) string {
	t.Helper()
	agentOnce.Do(func() {
		bin := mitogenBin
		if b := os.Getenv("MITOGEN_CONFORMANCE_AGENT"); b != "" {
			bin = b // another build of mitogen to check against the cases
		}
		agentPath = filepath.Join(filepath.Dir(mitogenBin), "agent-limited")
		script := fmt.Sprintf("#!/bin/sh\nulimit -v %d\nexec '%s' \"$@\"\n", agentMemoryKiB, bin)
		agentErr = os.WriteFile(agentPath, []byte(script), 0o755)
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentPath
}

func mustLoadCases(t *testing.T) []confCase {
	t.Helper()
	cs, err := loadCases(casesDir)
	if err != nil {
		t.Fatalf("loading conformance cases: %v", err)
	}
	if len(cs) == 0 {
		t.Fatal("no conformance cases in " + casesDir)
	}
	return cs
}

// TestCasesGo runs the cases with the Go runner.
func TestCasesGo(t *testing.T) {
	t.Parallel()
	agent := limitedAgent(t)
	for _, c := range mustLoadCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			problem, diag := runCase(agent, c)
			if problem != "" {
				t.Errorf("%s\n    rule: %s%s", problem, c.Rule, diag)
			}
		})
	}
}

// TestCasesPython runs the cases with a master written in Python against
// code from `thrift --gen py` and Debian's python3-thrift.
func TestCasesPython(t *testing.T) {
	t.Parallel()
	testhosts.Need(t, "thrift", "/usr/bin/python3")
	if out, err := exec.Command("/usr/bin/python3", "-c", "import thrift").CombinedOutput(); err != nil {
		need(t, fmt.Sprintf("python3-thrift (/usr/bin/python3 cannot import thrift: %s)", strings.TrimSpace(string(out))))
	}
	gen := t.TempDir()
	if out, err := exec.Command("thrift", "--gen", "py", "-out", gen, "../idl/mitogen.thrift").CombinedOutput(); err != nil {
		t.Fatalf("thrift --gen py: %v\n%s", err, out)
	}
	cmd := exec.Command("/usr/bin/python3", "python/runner.py", "--agent", limitedAgent(t), "--gen", gen, "--cases", casesDir)
	runExternal(t, "python", cmd)
}

// TestCasesNode runs the cases with a master written in Node.js against
// code from `thrift --gen js:node` and npm's thrift (conformance/node).
func TestCasesNode(t *testing.T) {
	t.Parallel()
	testhosts.Need(t, "thrift", "node")
	modules, _ := filepath.Abs("node/node_modules")
	if _, err := os.Stat(filepath.Join(modules, "thrift", "package.json")); err != nil {
		need(t, "npm's thrift in conformance/node/node_modules (run .ci/deps, or `npm ci` in conformance/node)")
	}
	gen := t.TempDir()
	if out, err := exec.Command("thrift", "--gen", "js:node", "-out", gen, "../idl/mitogen.thrift").CombinedOutput(); err != nil {
		t.Fatalf("thrift --gen js:node: %v\n%s", err, out)
	}
	cmd := exec.Command("node", "node/runner.js", "--agent", limitedAgent(t), "--gen", gen, "--cases", casesDir)
	// The generated modules require('thrift') from outside conformance/node.
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	runExternal(t, "node", cmd)
}

// need skips t (fails it in CI) for a missing prerequisite.
func need(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("MITOGEN_CI") != "" {
		t.Fatalf("CI must have %s (.ci/deps)", what)
	}
	t.Skipf("skipping: %s is missing (Debian: see .ci/deps)", what)
}

var resultLine = regexp.MustCompile(`^(PASS|FAIL) (\S+)(?:: (.*)| \(.*\))$`)

// runExternal runs a runner and reports its per-case results as subtests.
func runExternal(t *testing.T, name string, cmd *exec.Cmd) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	results := map[string]string{} // case -> "" (passed) or what failed
	var current string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := resultLine.FindStringSubmatch(line); m != nil {
			current = m[2]
			results[current] = ""
			if m[1] == "FAIL" {
				results[current] = m[3]
			}
			continue
		}
		if current != "" && strings.HasPrefix(line, "    ") && results[current] != "" {
			results[current] += "\n" + line
		}
	}
	if len(results) == 0 {
		t.Fatalf("%s runner reported no case (%v):\n%s", name, err, out)
	}
	for _, c := range mustLoadCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			res, ok := results[c.Name]
			switch {
			case !ok:
				t.Errorf("the %s runner printed no result for this case", name)
			case res != "":
				t.Errorf("%s runner: %s", name, res)
			}
		})
	}
	if err != nil && !t.Failed() {
		t.Errorf("%s runner exited with %v although every case passed:\n%s", name, err, out)
	}
}
