package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// heavyPrefixes are packages the mitogen CLI must not link: Kitex (see
// package kitexconn) and what comes with it. The CLI is also the agent the
// bootstrap copies to every host a chain reaches, so it stays lean.
var heavyPrefixes = []string{
	"github.com/cloudwego/kitex",
	"github.com/cloudwego/netpoll",
	"github.com/cloudwego/dynamicgo",
	"github.com/cloudwego/frugal",
	"github.com/bytedance/sonic",
	"github.com/seed-a176d0ab/mitogen-go/kitexconn",
}

// `go list -deps ./cmd/mitogen` names no Kitex package.
func TestCLILinksNoKitex(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("MITOGEN_CI") != "" {
			t.Fatal("the go command is not on PATH; CI must have it")
		}
		t.Skip("the go command is not on PATH; skipping")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 || !strings.Contains(string(out), "github.com/seed-a176d0ab/mitogen-go/core\n") {
		t.Fatalf("go list -deps gave %d packages, without core: not a dependency list", len(deps))
	}
	for _, p := range deps {
		for _, h := range heavyPrefixes {
			if p == h || strings.HasPrefix(p, h+"/") {
				t.Errorf("./cmd/mitogen links %s", p)
			}
		}
	}
}
