package ssh

import (
	"strings"
	"testing"

	"github.com/seed-a176d0ab/mitogen-go/transport"
)

func TestArgs(t *testing.T) {
	tr := &Transport{Spec: transport.Spec{Kind: transport.KindSSH, User: "u", Host: "h", Port: 2222},
		Opts: Options{Identity: "/k", ConfigFile: "/c", ConnectTimeout: 5, Options: []string{"A=b"}, HostKeyChecking: "enforce"}}
	args, err := tr.Args("CMD")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(args, " ")
	for _, want := range []string{"-o BatchMode=yes", "-o StrictHostKeyChecking=yes", "-F /c", "-i /k", "-o ConnectTimeout=5", "-o A=b", "-p 2222", "-l u", "-- h CMD"} {
		if !strings.Contains(got, want) {
			t.Errorf("args %q lack %q", got, want)
		}
	}
	tr.Opts.Password = "pw"
	tr.Opts.HostKeyChecking = "accept-new"
	args, _ = tr.Args("CMD")
	got = strings.Join(args, " ")
	if strings.Contains(got, "BatchMode=yes") || !strings.Contains(got, "StrictHostKeyChecking=accept-new") || strings.Contains(got, "pw") {
		t.Errorf("with a password: %q", got)
	}
	tr.Opts.HostKeyChecking = "sometimes"
	if _, err := tr.Args("CMD"); err == nil {
		t.Error("bad host key checking accepted")
	}
	// Unset, ssh_config decides: nothing on the command line overrides it.
	tr.Opts.HostKeyChecking = ""
	args, _ = tr.Args("CMD")
	if got := strings.Join(args, " "); strings.Contains(got, "StrictHostKeyChecking") {
		t.Errorf("unset host key checking still overrides ssh_config: %q", got)
	}
	tr.Opts.Options = []string{"novalue"}
	if _, err := tr.Args("CMD"); err == nil {
		t.Error("option without = accepted")
	}
}

func TestClassify(t *testing.T) {
	tr := &Transport{Spec: transport.Spec{Kind: transport.KindSSH, Host: "h"}}
	for stderr, want := range map[string]string{
		"root@h: Permission denied (publickey).":                     "authentication failed",
		"Host key verification failed.":                              "host key",
		"ssh: connect to host h port 1: Connection refused":          "unreachable",
		"ssh: Could not resolve hostname h: Name or service unknown": "unreachable",
		"": "agent did not start",
	} {
		if err := tr.classify(stderr, nil); !strings.Contains(err.Error(), want) {
			t.Errorf("classify(%q) = %v, want %q", stderr, err, want)
		}
	}
}
