package transport

import "testing"

func TestParseSpec(t *testing.T) {
	good := map[string]Spec{
		"local":         {Kind: KindLocal},
		"ssh:host":      {Kind: KindSSH, Host: "host"},
		"ssh:u@h:2222":  {Kind: KindSSH, User: "u", Host: "h", Port: 2222},
		"ssh:a@b@h":     {Kind: KindSSH, User: "a@b", Host: "h"},
		"ssh:[::1]:22":  {Kind: KindSSH, Host: "::1", Port: 22},
		"sudo:":         {Kind: KindSudo, User: "root"},
		"sudo":          {Kind: KindSudo, User: "root"},
		"sudo:postgres": {Kind: KindSudo, User: "postgres"},
	}
	for in, want := range good {
		got, err := ParseSpec(in)
		if err != nil || got != want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "lokal", "local:x", "ssh:", "ssh:h:0", "ssh:h:x", "ssh:@h", "ssh:[::1"} {
		if _, err := ParseSpec(bad); err == nil {
			t.Errorf("ParseSpec(%q) succeeded", bad)
		}
	}
}
