package container

import (
	"slices"
	"testing"

	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
)

// The argument vector each runtime is given, up to the command it runs.
func TestArgv(t *testing.T) {
	a := &bootstrap.Agent{Path: "/agent"}
	cases := []struct {
		spec string
		opts map[string]string
		want []string
	}{
		{"docker:web", nil, []string{"docker", "exec", "--interactive", "--", "web"}},
		{"docker:app@web", map[string]string{"program": "/opt/docker", "args": "--context\nprod"},
			[]string{"/opt/docker", "--context", "prod", "exec", "--interactive", "--user=app", "--", "web"}},
		{"podman:u@c", nil, []string{"podman", "exec", "--interactive", "--user=u", "--", "c"}},
		{"kubectl:pod", nil, []string{"kubectl", "exec", "--stdin", "pod", "--"}},
		{"kubectl:pod", map[string]string{"namespace": "ns", "container": "side", "kubeconfig": "/k", "context": "prod"},
			[]string{"kubectl", "--kubeconfig=/k", "--context=prod", "--namespace=ns", "exec", "--stdin", "--container=side", "pod", "--"}},
		{"lxc:c1", nil, []string{"lxc-attach", "--clear-env", "--name", "c1", "--"}},
		{"lxd:c1", nil, []string{"lxc", "exec", "--mode=non-interactive", "c1", "--"}},
	}
	for _, c := range cases {
		sp, err := transport.ParseSpec(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := transport.Default.New(sp, c.opts, a)
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		got := tr.(*Exec).Command("SCRIPT")
		want := append(c.want, "/bin/sh", "-c", "SCRIPT")
		if !slices.Equal(got, want) {
			t.Errorf("%s %v:\n got %q\nwant %q", c.spec, c.opts, got, want)
		}
	}
	if _, err := transport.Default.New(transport.Spec{Kind: transport.KindDocker, Host: "w"}, map[string]string{"args": "ok\n\nempty"}, a); err == nil {
		t.Error("an empty runtime argument accepted")
	}
}
