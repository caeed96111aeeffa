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
			Invocation{Host: "h", Login: true}},
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
