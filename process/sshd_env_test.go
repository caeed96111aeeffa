package process

import (
	"strings"
	"testing"
)

// Shell commands run as sshd runs them: sshd's environment and nothing of
// the agent's own, in "/" when the home directory is missing; argv keeps
// the agent's environment. The master's own SSH_CONNECTION (it may run
// under ssh) is not a local agent's: the command sees a loopback one.
func TestShellGetsSSHDEnvironment(t *testing.T) {
	t.Setenv("HOME", "/nonexistent-mitogen-home")
	t.Setenv("MITOGEN_TEST_MARKER", "leaked")
	t.Setenv("SSH_CONNECTION", "192.0.2.1 1234 192.0.2.2 22")
	t.Setenv("SSH_CLIENT", "192.0.2.1 1234 22")
	c := localContext(t)

	cmd := Command(c)
	cmd.Shell = `pwd; echo "$HOME"; echo "${MITOGEN_TEST_MARKER-unset}"; echo "$GREETING"; echo "$SSH_CONNECTION"; echo "$SSH_CLIENT"; [ -n "$USER" ] && [ "$LOGNAME" = "$USER" ] && [ "$MAIL" = "/var/mail/$USER" ] && echo account`
	cmd.Env = []string{"GREETING=hi"}
	cmd.Dir = "~"
	out, err := cmd.Output()
	lines := strings.Split(string(out), "\n")
	if err != nil || len(lines) != 8 || lines[0] != "/" || lines[1] != "/nonexistent-mitogen-home" || lines[2] != "unset" || lines[3] != "hi" || lines[6] != "account" {
		t.Fatalf("Shell: %q, %v; want / (no home), HOME kept, no marker, GREETING, the account's variables", out, err)
	}
	conn, client := strings.Fields(lines[4]), strings.Fields(lines[5])
	if len(conn) != 4 || conn[0] != "127.0.0.1" || conn[2] != "127.0.0.1" || conn[3] != "22" ||
		len(client) != 3 || client[0] != "127.0.0.1" || client[1] != conn[1] || client[2] != "22" {
		t.Fatalf("SSH_CONNECTION %q SSH_CLIENT %q; want a loopback connection to port 22", lines[4], lines[5])
	}

	out, err = Command(c, "sh", "-c", `echo "${MITOGEN_TEST_MARKER-unset}"`).Output()
	if err != nil || string(out) != "leaked\n" {
		t.Fatalf("argv: %q, %v; want the agent's own environment", out, err)
	}
}
