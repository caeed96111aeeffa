// Package sshargs parses an OpenSSH ssh(1) command line the way OpenSSH 9.2
// does, for fakessh: the option letters and which take values
// ("1246ab:c:e:fgi:kl:m:no:p:qstvxAB:CD:E:F:GI:J:KL:MNO:P:Q:R:S:TVw:W:XYy"),
// bundling, options after the destination (ssh.c re-runs getopt after the
// host), `--`, user@host and ssh://user@host:port destinations, and -o
// Key=Value / "Key Value". Where OpenSSH keeps the first value it sees (-l,
// -p, -o), so does Parse.
package sshargs

import (
	"fmt"
	"strconv"
	"strings"
)

// Mode says what an invocation asks for.
type Mode int

// Modes.
const (
	ModeRun         Mode = iota // run a command or a login shell on the host
	ModePrintConfig             // -G: print the configuration and exit 0
	ModeVersion                 // -V: print the version to stderr and exit 0
)

// Version is what -V prints.
const Version = "OpenSSH_9.2p1 (mitogen-go fakessh), OpenSSL not used"

// Invocation is a parsed ssh command line.
type Invocation struct {
	Mode      Mode
	User      string            // -l, user@host, ssh://user@host, -o User=
	Host      string            // destination host, without user and port
	Port      int               // 0 when not given
	Command   []string          // the arguments after the destination
	Subsystem bool              // -s: Command[0] names a subsystem
	Login     bool              // no command: a login shell
	TTY       int               // number of -t; -1 for -T
	NoStdin   bool              // -n (or -f)
	Quiet     bool              // -q
	Verbose   int               // number of -v
	Options   map[string]string // -o options, keys lower-cased; first value wins
	SendEnv   []string          // -o SendEnv patterns
	SetEnv    map[string]string // -o SetEnv NAME=VALUE
	Forwards  []string          // -L/-R/-D/-W specs as given
	Ignored   []string          // options accepted with no meaning here

	Background   bool      // -f (or -o ForkAfterAuthentication=yes): background once the session is up
	NoCommand    bool      // -N (or -o SessionType=none): no command, no shell
	Control      string    // -O ctl_cmd
	Local        []Forward // -L
	Remote       []Forward // -R
	Dynamic      []Forward // -D
	StdioForward *Forward  // -W host:port
	// Unsupported lists what was asked that fakessh cannot do, one
	// phrase each; ssh must exit 255 saying so.
	Unsupported []string
}

// RemoteCommand is the command string ssh sends: the arguments joined by
// single spaces, with no quoting added (exactly OpenSSH's behaviour).
func (inv *Invocation) RemoteCommand() string { return strings.Join(inv.Command, " ") }

// UsageError is what ssh itself would reject; print Msg and exit 255.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

const usageText = `usage: ssh [-46AaCfGgKkMNnqsTtVvXxYy] [-B bind_interface] [-b bind_address]
           [-c cipher_spec] [-D [bind_address:]port] [-E log_file]
           [-e escape_char] [-F configfile] [-I pkcs11] [-i identity_file]
           [-J destination] [-L address] [-l login_name] [-m mac_spec]
           [-O ctl_cmd] [-o option] [-P tag] [-p port] [-Q query_option]
           [-R address] [-S ctl_path] [-W host:port]
           [-w local_tun[:remote_tun]] destination [command [argument ...]]`

func usage(prefix string) *UsageError {
	if prefix != "" {
		return &UsageError{Msg: prefix + "\n" + usageText}
	}
	return &UsageError{Msg: usageText}
}

const (
	flagLetters  = "1246AaCfGgKkMNnqsTtVvXxYy"
	valueLetters = "BbcDEeFIiJLlmOoPpQRSWw"
)

// Parse parses ssh's arguments (without argv[0]).
func Parse(args []string) (*Invocation, error) {
	inv := &Invocation{Options: map[string]string{}, SetEnv: map[string]string{}}
	haveHost := false
	terminated := false
	i := 0
	for i < len(args) {
		a := args[i]
		if !terminated && a == "--" {
			terminated = true
			i++
			continue
		}
		if !terminated && len(a) > 1 && a[0] == '-' {
			n, err := inv.option(args, i)
			if err != nil {
				return nil, err
			}
			if inv.Mode == ModeVersion {
				return inv, nil
			}
			i += n
			continue
		}
		if haveHost {
			inv.Command = append([]string(nil), args[i:]...)
			break
		}
		if err := inv.destination(a); err != nil {
			return nil, err
		}
		haveHost = true
		i++
		// ssh.c restarts getopt after the destination unless "--" was seen.
	}
	if !haveHost {
		return nil, usage("")
	}
	if inv.Subsystem && len(inv.Command) == 0 {
		return nil, &UsageError{Msg: "You must specify a subsystem to invoke."}
	}
	if len(inv.Command) == 0 {
		if rc := inv.Options["remotecommand"]; rc != "" && !strings.EqualFold(rc, "none") {
			inv.Command = []string{rc}
		}
	}
	if inv.NoCommand || inv.StdioForward != nil || inv.Control != "" {
		inv.Command, inv.Subsystem = nil, false
	}
	inv.Login = inv.Mode == ModeRun && len(inv.Command) == 0 && !inv.NoCommand && inv.StdioForward == nil && inv.Control == ""
	return inv, nil
}

// option parses the option group at args[i] and returns how many arguments it used.
func (inv *Invocation) option(args []string, i int) (int, error) {
	a := args[i]
	for j := 1; j < len(a); j++ {
		c := a[j]
		switch {
		case strings.IndexByte(flagLetters, c) >= 0:
			inv.flag(c)
			if inv.Mode == ModeVersion {
				return 1, nil
			}
		case strings.IndexByte(valueLetters, c) >= 0:
			val := a[j+1:]
			used := 1
			if val == "" {
				if i+1 >= len(args) {
					return 0, usage(fmt.Sprintf("ssh: option requires an argument -- %c", c))
				}
				val = args[i+1]
				used = 2
			}
			if err := inv.valued(c, val); err != nil {
				return 0, err
			}
			return used, nil
		default:
			return 0, usage(fmt.Sprintf("ssh: illegal option -- %c", c))
		}
	}
	return 1, nil
}

func (inv *Invocation) flag(c byte) {
	switch c {
	case 'G':
		inv.Mode = ModePrintConfig
	case 'V':
		inv.Mode = ModeVersion
	case 's':
		inv.Subsystem = true
	case 't':
		if inv.TTY >= 0 {
			inv.TTY++
		}
	case 'T':
		inv.TTY = -1
	case 'n':
		inv.NoStdin = true
	case 'f':
		inv.NoStdin = true
		inv.Background = true
	case 'N':
		inv.NoCommand = true
	case 'q':
		inv.Quiet = true
	case 'v':
		inv.Verbose++
	default:
		inv.Ignored = append(inv.Ignored, "-"+string(c))
	}
}

func (inv *Invocation) valued(c byte, val string) error {
	switch c {
	case 'l':
		if inv.User == "" {
			inv.User = val
		}
	case 'p':
		p, err := strconv.Atoi(val)
		if err != nil || p <= 0 || p > 65535 {
			return &UsageError{Msg: fmt.Sprintf("Bad port '%s'", val)}
		}
		if inv.Port == 0 {
			inv.Port = p
		}
	case 'o':
		return inv.configOption(val)
	case 'L', 'R', 'D':
		inv.Forwards = append(inv.Forwards, "-"+string(c)+" "+val)
		return inv.parseForward(c, val)
	case 'W':
		inv.Forwards = append(inv.Forwards, "-"+string(c)+" "+val)
		return inv.parseStdioForward(val)
	case 'O':
		if !controlCommands[val] {
			return &UsageError{Msg: "Invalid multiplex command."}
		}
		inv.Control = val
	case 'w':
		inv.Unsupported = append(inv.Unsupported, "-w "+val+": tunnel device forwarding")
	default:
		inv.Ignored = append(inv.Ignored, "-"+string(c)+" "+val)
	}
	return nil
}

// configOption applies one -o: "Key=Value" or "Key Value".
func (inv *Invocation) configOption(s string) error {
	s = strings.TrimSpace(s)
	k, v, ok := strings.Cut(s, "=")
	if i := strings.IndexAny(s, " \t"); i >= 0 && (!ok || i < len(k)) {
		k, v, ok = s[:i], strings.TrimLeft(s[i+1:], " \t="), true
	}
	k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
	if !ok || k == "" || v == "" {
		return &UsageError{Msg: fmt.Sprintf("command-line line 0: %s: missing argument.", strings.TrimSpace(s))}
	}
	switch k {
	case "sendenv":
		inv.SendEnv = append(inv.SendEnv, strings.Fields(v)...)
		return nil
	case "setenv":
		for _, kv := range strings.Fields(v) {
			name, val, found := strings.Cut(kv, "=")
			if !found {
				return &UsageError{Msg: fmt.Sprintf("command-line line 0: Invalid environment string \"%s\".", kv)}
			}
			if _, seen := inv.SetEnv[name]; !seen {
				inv.SetEnv[name] = val
			}
		}
		return nil
	case "forkafterauthentication":
		if strings.EqualFold(v, "yes") {
			inv.Background, inv.NoStdin = true, true
		}
	case "sessiontype":
		if strings.EqualFold(v, "none") {
			inv.NoCommand = true
		}
	case "localforward", "remoteforward", "dynamicforward":
		// "[bind:]port host:hostport" in a config file; ssh accumulates them.
		c := map[string]byte{"localforward": 'L', "remoteforward": 'R', "dynamicforward": 'D'}[k]
		spec := strings.Join(strings.Fields(v), ":")
		inv.Forwards = append(inv.Forwards, "-"+string(c)+" "+spec)
		return inv.parseForward(c, spec)
	case "user":
		if inv.User == "" {
			inv.User = v
		}
	case "port":
		p, err := strconv.Atoi(v)
		if err != nil || p <= 0 || p > 65535 {
			return &UsageError{Msg: fmt.Sprintf("command-line line 0: Badly formatted port number.")}
		}
		if inv.Port == 0 {
			inv.Port = p
		}
	}
	if _, seen := inv.Options[k]; !seen {
		inv.Options[k] = v
	}
	return nil
}

// destination parses host, user@host or ssh://[user@]host[:port].
func (inv *Invocation) destination(d string) error {
	if rest, ok := strings.CutPrefix(d, "ssh://"); ok {
		rest = strings.TrimSuffix(rest, "/")
		if strings.Contains(rest, "/") {
			return &UsageError{Msg: fmt.Sprintf("ssh: invalid URI %q: no path allowed", d)}
		}
		user := ""
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			user, rest = rest[:at], rest[at+1:]
		}
		host, port := rest, ""
		if strings.HasPrefix(rest, "[") {
			end := strings.Index(rest, "]")
			if end < 0 {
				return usage("")
			}
			host, port = rest[1:end], strings.TrimPrefix(rest[end+1:], ":")
		} else if c := strings.LastIndex(rest, ":"); c >= 0 {
			host, port = rest[:c], rest[c+1:]
		}
		if host == "" {
			return usage("")
		}
		if port != "" {
			p, err := strconv.Atoi(port)
			if err != nil || p <= 0 || p > 65535 {
				return &UsageError{Msg: fmt.Sprintf("Bad port '%s'", port)}
			}
			if inv.Port == 0 {
				inv.Port = p
			}
		}
		if user != "" && inv.User == "" {
			inv.User = user
		}
		inv.Host = host
		return nil
	}
	if at := strings.LastIndex(d, "@"); at >= 0 {
		if at == 0 {
			return usage("")
		}
		if inv.User == "" {
			inv.User = d[:at]
		}
		d = d[at+1:]
	}
	if d == "" {
		return usage("")
	}
	inv.Host = d
	return nil
}
