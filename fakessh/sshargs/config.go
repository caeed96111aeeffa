package sshargs

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// PrintConfig answers -G the way ssh does: lower-case "key value" lines for
// the destination. git runs `ssh -G host` to learn whether ssh is OpenSSH.
func PrintConfig(w io.Writer, inv *Invocation, defaultUser string) error {
	user := inv.User
	if user == "" {
		user = defaultUser
	}
	port := inv.Port
	if port == 0 {
		port = 22
	}
	lines := map[string]string{
		"host":                         inv.Host,
		"hostname":                     inv.Host,
		"user":                         user,
		"port":                         fmt.Sprint(port),
		"addressfamily":                "any",
		"batchmode":                    "no",
		"compression":                  "no",
		"forwardagent":                 "no",
		"forwardx11":                   "no",
		"requesttty":                   "auto",
		"stricthostkeychecking":        "ask",
		"serveraliveinterval":          "0",
		"connecttimeout":               "none",
		"controlmaster":                "false",
		"identitiesonly":               "no",
		"loglevel":                     "INFO",
		"permitlocalcommand":           "no",
		"proxycommand":                 "none",
		"userknownhostsfile":           "~/.ssh/known_hosts ~/.ssh/known_hosts2",
		"globalknownhostsfile":         "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2",
		"hashknownhosts":               "no",
		"pubkeyauthentication":         "true",
		"passwordauthentication":       "yes",
		"kbdinteractiveauthentication": "yes",
	}
	for k, v := range inv.Options {
		lines[k] = v
	}
	if len(inv.SendEnv) > 0 {
		lines["sendenv"] = strings.Join(inv.SendEnv, " ")
	}
	keys := make([]string, 0, len(lines))
	for k := range lines {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// ssh prints user, hostname and port first.
	var b strings.Builder
	for _, k := range []string{"host", "user", "hostname", "port"} {
		fmt.Fprintf(&b, "%s %s\n", k, lines[k])
		delete(lines, k)
	}
	for _, k := range keys {
		if v, ok := lines[k]; ok {
			fmt.Fprintf(&b, "%s %s\n", k, v)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
