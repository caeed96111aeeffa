package transport_test

import (
	"maps"
	"strings"
	"testing"

	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
	_ "github.com/seed-a176d0ab/mitogen-go/transport/container"
	_ "github.com/seed-a176d0ab/mitogen-go/transport/doas"
	"github.com/seed-a176d0ab/mitogen-go/transport/setns"
	"github.com/seed-a176d0ab/mitogen-go/transport/ssh"
	_ "github.com/seed-a176d0ab/mitogen-go/transport/su"
	"github.com/seed-a176d0ab/mitogen-go/transport/sudo"
)

func TestParseSpec(t *testing.T) {
	good := map[string]transport.Spec{
		"local":              {Kind: transport.KindLocal},
		"ssh:host":           {Kind: transport.KindSSH, Host: "host"},
		"ssh:u@h:2222":       {Kind: transport.KindSSH, User: "u", Host: "h", Port: 2222},
		"ssh:a@b@h":          {Kind: transport.KindSSH, User: "a@b", Host: "h"},
		"ssh:[::1]:22":       {Kind: transport.KindSSH, Host: "::1", Port: 22},
		"ssh:[::1]":          {Kind: transport.KindSSH, Host: "::1"},
		"sudo:":              {Kind: transport.KindSudo, User: "root"},
		"sudo":               {Kind: transport.KindSudo, User: "root"},
		"sudo:postgres":      {Kind: transport.KindSudo, User: "postgres"},
		"su":                 {Kind: transport.KindSu, User: "root"},
		"su:bob":             {Kind: transport.KindSu, User: "bob"},
		"doas:":              {Kind: transport.KindDoas, User: "root"},
		"doas:www":           {Kind: transport.KindDoas, User: "www"},
		"setns:pid=42":       {Kind: transport.KindSetns, Host: "pid=42"},
		"setns:docker=web":   {Kind: transport.KindSetns, Host: "docker=web"},
		"docker:web":         {Kind: transport.KindDocker, Host: "web"},
		"docker:app@web":     {Kind: transport.KindDocker, User: "app", Host: "web"},
		"podman:web":         {Kind: transport.KindPodman, Host: "web"},
		"kubectl:pod-1":      {Kind: transport.KindKubectl, Host: "pod-1"},
		"lxc:c1":             {Kind: transport.KindLXC, Host: "c1"},
		"lxd:c1":             {Kind: transport.KindLXD, Host: "c1"},
		"setns:podman=a.b_c": {Kind: transport.KindSetns, Host: "podman=a.b_c"},
	}
	for in, want := range good {
		got, err := transport.ParseSpec(in)
		if err != nil || got != want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", in, got, err, want)
			continue
		}
		// The text form reads back to the same spec.
		again, err := transport.ParseSpec(got.String())
		if err != nil || again != got {
			t.Errorf("ParseSpec(%q.String() = %q) = %+v, %v", in, got.String(), again, err)
		}
	}
	for _, bad := range []string{"", "lokal", "local:x", "ssh:", "ssh:h:0", "ssh:h:x", "ssh:@h", "ssh:[::1",
		"ssh:-oProxyCommand=x", "ssh:h:", "sudo:-u", "su:a b", "setns:", "setns:42", "setns:pid=x", "setns:pid=-1",
		"setns:lxc=a", "docker:", "docker:a:b", "docker:-rm", "kubectl:u@pod", "lxc:a/b"} {
		if sp, err := transport.ParseSpec(bad); err == nil {
			t.Errorf("ParseSpec(%q) = %+v, want an error", bad, sp)
		}
	}
}

func TestUnknownKindListsKnownOnes(t *testing.T) {
	_, err := transport.ParseSpec("ftp:host")
	if err == nil || !strings.Contains(err.Error(), "doas, docker, kubectl, local, lxc, lxd, podman, setns, ssh, su, sudo") {
		t.Fatalf("error %v; want the registered kinds listed", err)
	}
	empty := &transport.Registry{}
	if _, err := empty.ParseSpec("local"); err == nil || !strings.Contains(err.Error(), "no methods are registered") {
		t.Fatalf("empty registry: %v", err)
	}
}

func TestOwnRegistry(t *testing.T) {
	r, err := transport.NewRegistry(transport.LocalMethod, ssh.Method)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ParseSpec("sudo:root"); err == nil || !strings.Contains(err.Error(), "want one of local, ssh") {
		t.Errorf("sudo in a registry without it: %v", err)
	}
	if err := r.Register(ssh.Method); err == nil {
		t.Error("a kind registered twice")
	}
	for _, m := range []transport.Method{
		{Kind: "a:b", Parse: ssh.Method.Parse, New: ssh.Method.New},
		{Kind: "x"},
		{Kind: "y", Parse: ssh.Method.Parse, New: ssh.Method.New, NewOptions: func() any { return struct{}{} }},
		{Kind: "z", Parse: ssh.Method.Parse, New: ssh.Method.New, NewOptions: func() any {
			return &struct {
				F float64 `opt:"f"`
			}{}
		}},
	} {
		if err := r.Register(m); err == nil {
			t.Errorf("invalid method %q registered", m.Kind)
		}
	}
	tr, err := r.New(transport.Spec{Kind: transport.KindSSH, Host: "h"}, map[string]string{"identity": "/k"}, &bootstrap.Agent{Path: "/x"})
	if err != nil || tr.(*ssh.Transport).Opts.Identity != "/k" {
		t.Fatalf("New: %v %v", tr, err)
	}
}

func TestOptionsWireForm(t *testing.T) {
	in := &ssh.Options{ConfigFile: "/c", Options: []string{"A=1", "B=2"}, ConnectTimeout: 5, HostKeyChecking: "ignore", Password: "pw"}
	wire, err := transport.Default.EncodeOptions(transport.KindSSH, in)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"config_file": "/c", "options": "A=1\nB=2", "connect_timeout": "5", "host_key_checking": "ignore", "password": "pw"}
	if !maps.Equal(wire, want) {
		t.Fatalf("wire %v, want %v", wire, want)
	}
	out, err := transport.Default.DecodeOptions(transport.KindSSH, wire)
	if err != nil {
		t.Fatal(err)
	}
	o := out.(*ssh.Options)
	if o.ConfigFile != "/c" || len(o.Options) != 2 || o.Options[1] != "B=2" || o.ConnectTimeout != 5 || o.Password != "pw" {
		t.Fatalf("decoded %+v", o)
	}
	if red := transport.Default.Redact(transport.KindSSH, wire); red["password"] == "pw" || red["config_file"] != "/c" {
		t.Fatalf("redacted %v", red)
	}

	// Options of another method, unknown keys and bad values are errors.
	if _, err := transport.Default.EncodeOptions(transport.KindSSH, &sudo.Options{Password: "x"}); err == nil || !strings.Contains(err.Error(), "*ssh.Options") {
		t.Errorf("sudo options for an ssh hop: %v", err)
	}
	for kind, wire := range map[transport.Kind]map[string]string{
		transport.KindSSH:   {"sudo_password": "x"},
		transport.KindSudo:  {"identity": "/k"},
		transport.KindLocal: {"password": "x"},
	} {
		if _, err := transport.Default.DecodeOptions(kind, wire); err == nil {
			t.Errorf("%s hop accepted %v", kind, wire)
		}
	}
	for _, wire := range []map[string]string{
		{"connect_timeout": "soon"}, {"host_key_checking": "maybe"}, {"options": "NOEQUALS"},
	} {
		if _, err := transport.Default.DecodeOptions(transport.KindSSH, wire); err == nil {
			t.Errorf("ssh hop accepted %v", wire)
		}
	}
	if _, err := transport.Default.DecodeOptions(transport.KindSudo, map[string]string{"login": "perhaps"}); err == nil {
		t.Error("bad boolean accepted")
	}
	if _, err := transport.Default.DecodeOptions(transport.KindSetns, map[string]string{"namespaces": "net\nbogus"}); err == nil {
		t.Error("unknown namespace accepted")
	}
	if _, err := transport.EncodeOptions(&ssh.Options{Options: []string{"A=1\nB=2"}}); err == nil {
		t.Error("a list item with a newline encoded")
	}
	var _ = setns.Method
}
