package sshargs

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseRealInvocations(t *testing.T) {
	cases := []struct {
		argv []string
		want Invocation // only the fields set here are compared
	}{
		{[]string{"-l", "user", "host", "rsync", "--server", "-vlogDtpre.iLsfxCIvu", ".", "/dst/"},
			Invocation{User: "user", Host: "host", Command: []string{"rsync", "--server", "-vlogDtpre.iLsfxCIvu", ".", "/dst/"}}},
		{[]string{"host", "rsync", "--server", "--sender", "-vlogDtpre.iLsfxCIvu", ".", "/src/"},
			Invocation{Host: "host", Command: []string{"rsync", "--server", "--sender", "-vlogDtpre.iLsfxCIvu", ".", "/src/"}}},
		{[]string{"-x", "-oPermitLocalCommand=no", "-oClearAllForwardings=yes", "-oRemoteCommand=none", "-oRequestTTY=no", "-oForwardAgent=no", "-l", "user", "--", "host", "scp", "-t", "/dst"},
			Invocation{User: "user", Host: "host", Command: []string{"scp", "-t", "/dst"}}},
		{[]string{"-x", "-oPermitLocalCommand=no", "-oClearAllForwardings=yes", "-oRemoteCommand=none", "-oRequestTTY=no", "-oForwardAgent=no", "-oControlMaster=no", "-l", "user", "-s", "--", "host", "sftp"},
			Invocation{User: "user", Host: "host", Command: []string{"sftp"}, Subsystem: true}},
		{[]string{"-oForwardX11 no", "-oForwardAgent no", "-oPermitLocalCommand no", "-oClearAllForwardings yes", "-l", "user", "-o", "Protocol 2", "-s", "--", "host", "sftp"},
			Invocation{User: "user", Host: "host", Command: []string{"sftp"}, Subsystem: true}},
		{[]string{"-o", "SendEnv=GIT_PROTOCOL", "host", "git-upload-pack '/path/repo.git'"},
			Invocation{Host: "host", Command: []string{"git-upload-pack '/path/repo.git'"}, SendEnv: []string{"GIT_PROTOCOL"}}},
		{[]string{"-p", "2222", "-o", "SendEnv=GIT_PROTOCOL", "user@host", "git-receive-pack '/r.git'"},
			Invocation{User: "user", Host: "host", Port: 2222, Command: []string{"git-receive-pack '/r.git'"}, SendEnv: []string{"GIT_PROTOCOL"}}},
		{[]string{"ssh://git@host:2222"}, Invocation{User: "git", Host: "host", Port: 2222, Login: true}},
		{[]string{"ssh://[::1]:22"}, Invocation{Host: "::1", Port: 22, Login: true}},
		{[]string{"-vvv", "-tt", "-p22", "root@h", "uname", "-a"},
			Invocation{User: "root", Host: "h", Port: 22, Verbose: 3, TTY: 2, Command: []string{"uname", "-a"}}},
		{[]string{"h", "-p", "23", "ls", "-l"}, Invocation{Host: "h", Port: 23, Command: []string{"ls", "-l"}}},
		{[]string{"h", "ls", "-p", "23"}, Invocation{Host: "h", Command: []string{"ls", "-p", "23"}}},
		{[]string{"-lfirst", "a@b@h", "-l", "second"}, Invocation{User: "first", Host: "h", Login: true}},
		{[]string{"-T", "-n", "-q", "h", "true"}, Invocation{Host: "h", TTY: -1, NoStdin: true, Quiet: true, Command: []string{"true"}}},
		{[]string{"-o", "RemoteCommand=uptime", "h"}, Invocation{Host: "h", Command: []string{"uptime"}}},
		{[]string{"-4AaCgKkMNXxYy", "-B", "eth0", "-b", "1.2.3.4", "-c", "aes", "-D", "1080", "-E", "log", "-e", "none", "-F", "cfg", "-I", "p", "-i", "id", "-J", "jump", "-L", "1:h:2", "-m", "mac", "-O", "check", "-P", "tag", "-Q", "cipher", "-R", "3:h:4", "-S", "ctl", "-W", "h:1", "-w", "0:1", "h"},
			Invocation{Host: "h", Login: false, NoCommand: true, Control: "check", StdioForward: &Forward{Host: "h", Port: 1},
				Local: []Forward{{BindPort: 1, Host: "h", Port: 2}}, Remote: []Forward{{BindPort: 3, Host: "h", Port: 4}},
				Dynamic: []Forward{{BindPort: 1080}}, Unsupported: []string{"-w 0:1: tunnel device forwarding"}}},
		{[]string{"-fN", "-L", "127.0.0.1:8080:[::1]:80", "-L", "9/db/5432", "-D", "[::1]:1080", "-o", "LocalForward=7 h:8", "h", "cat"},
			Invocation{Host: "h", NoStdin: true, Background: true, NoCommand: true,
				Local:   []Forward{{BindHost: "127.0.0.1", BindPort: 8080, Host: "::1", Port: 80}, {BindPort: 9, Host: "db", Port: 5432}, {BindPort: 7, Host: "h", Port: 8}},
				Dynamic: []Forward{{BindHost: "::1", BindPort: 1080}}}},
		{[]string{"-W", "[fe80::1]:22", "h"}, Invocation{Host: "h", StdioForward: &Forward{Host: "fe80::1", Port: 22}}},
		{[]string{"-L", "/tmp/s:h:22", "-R", "8:/run/x", "h", "true"},
			Invocation{Host: "h", Command: []string{"true"}, Unsupported: []string{"-L /tmp/s:h:22: forwarding of unix sockets", "-R 8:/run/x: forwarding of unix sockets"}}},
		{[]string{"-oSetEnv=A=1 B=2", "h", "env"}, Invocation{Host: "h", Command: []string{"env"}, SetEnv: map[string]string{"A": "1", "B": "2"}}},
	}
	for _, c := range cases {
		got, err := Parse(c.argv)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.argv, err)
			continue
		}
		w := c.want
		check := func(name string, g, w any, set bool) {
			if set && !reflect.DeepEqual(g, w) {
				t.Errorf("Parse(%q).%s = %#v, want %#v", c.argv, name, g, w)
			}
		}
		check("User", got.User, w.User, true)
		check("Host", got.Host, w.Host, true)
		check("Port", got.Port, w.Port, true)
		check("Command", got.Command, w.Command, true)
		check("Subsystem", got.Subsystem, w.Subsystem, true)
		check("Login", got.Login, w.Login, true)
		check("TTY", got.TTY, w.TTY, true)
		check("Verbose", got.Verbose, w.Verbose, w.Verbose != 0)
		check("NoStdin", got.NoStdin, w.NoStdin, true)
		check("Quiet", got.Quiet, w.Quiet, true)
		check("SendEnv", got.SendEnv, w.SendEnv, w.SendEnv != nil)
		check("SetEnv", got.SetEnv, w.SetEnv, w.SetEnv != nil)
		check("Background", got.Background, w.Background, true)
		check("NoCommand", got.NoCommand, w.NoCommand, true)
		check("Control", got.Control, w.Control, true)
		check("Local", got.Local, w.Local, true)
		check("Remote", got.Remote, w.Remote, true)
		check("Dynamic", got.Dynamic, w.Dynamic, true)
		check("StdioForward", got.StdioForward, w.StdioForward, true)
		check("Unsupported", got.Unsupported, w.Unsupported, true)
	}
}

// Malformed forwarding specs and control commands are ssh's usage errors.
func TestParseForwardErrors(t *testing.T) {
	for _, c := range []struct {
		argv []string
		msg  string
	}{
		{[]string{"-L", "8080", "h"}, "Bad local forwarding specification '8080'"},
		{[]string{"-L", "x:h:22", "h"}, "Bad local forwarding specification 'x:h:22'"},
		{[]string{"-L", "1:h:99999", "h"}, "Bad local forwarding specification '1:h:99999'"},
		{[]string{"-R", "1:2:3:4:5", "h"}, "Bad remote forwarding specification '1:2:3:4:5'"},
		{[]string{"-D", "a:b:c", "h"}, "Bad dynamic forwarding specification 'a:b:c'"},
		{[]string{"-W", "h", "h"}, "Bad stdio forwarding specification 'h'"},
		{[]string{"-W", "[::1:22", "h"}, "Bad stdio forwarding specification '[::1:22'"},
		{[]string{"-O", "bogus", "h"}, "Invalid multiplex command."},
	} {
		_, err := Parse(c.argv)
		var ue *UsageError
		if !errors.As(err, &ue) || ue.Msg != c.msg {
			t.Errorf("Parse(%q) = %v, want usage error %q", c.argv, err, c.msg)
		}
	}
}

func TestRemoteCommandJoinsLikeOpenSSH(t *testing.T) {
	inv, err := Parse([]string{"h", "echo", "a  b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	if got := inv.RemoteCommand(); got != "echo a  b c" {
		t.Fatalf("RemoteCommand = %q", got)
	}
}

func TestModes(t *testing.T) {
	inv, err := Parse([]string{"-V"})
	if err != nil || inv.Mode != ModeVersion {
		t.Fatalf("-V: %+v %v", inv, err)
	}
	inv, err = Parse([]string{"-G", "-p", "2200", "u@example"})
	if err != nil || inv.Mode != ModePrintConfig {
		t.Fatalf("-G: %+v %v", inv, err)
	}
	var b bytes.Buffer
	PrintConfig(&b, inv, "me")
	out := b.String()
	for _, want := range []string{"user u\n", "hostname example\n", "port 2200\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("-G output lacks %q:\n%s", want, out)
		}
	}
}

func TestRejectsWhatSSHRejects(t *testing.T) {
	for _, argv := range [][]string{
		{"-Z", "h"}, {"-p", "abc", "h"}, {"-p", "0", "h"}, {}, {"-p"}, {"-s", "h"},
		{"-o", "NoValue", "h"}, {"@h"}, {"ssh://h:x"}, {"-l"}, {"-oSetEnv=NOEQUALS", "h"},
	} {
		_, err := Parse(argv)
		var ue *UsageError
		if !errors.As(err, &ue) || ue.Msg == "" {
			t.Errorf("Parse(%q) = %v; want a UsageError", argv, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("-l\x00u\x00h\x00cmd")
	f.Add("-oSendEnv=X\x00-s\x00--\x00h\x00sftp")
	f.Add("ssh://[::1]:22")
	f.Fuzz(func(t *testing.T, s string) {
		inv, err := Parse(strings.Split(s, "\x00"))
		if err != nil {
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("non-usage error %T: %v", err, err)
			}
			return
		}
		if inv.Mode == ModeRun && inv.Host == "" {
			t.Fatalf("run mode without a host: %+v", inv)
		}
	})
}
