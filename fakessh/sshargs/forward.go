package sshargs

import (
	"fmt"
	"strconv"
	"strings"
)

// Forward is one -L, -R or -D port forwarding, or the -W target.
type Forward struct {
	// BindHost is the listen address as given ("" when none was: ssh's
	// default, the loopback address; "*" for every address).
	BindHost string
	BindPort int
	// Host and Port are the target (none for -D).
	Host string
	Port int
}

// splitForward splits an ssh forwarding spec at its colons, honouring
// [bracketed] IPv6 addresses, and also accepts the slash form ssh allows
// ("port/host/hostport"). It returns the fields without brackets.
func splitForward(spec string) ([]string, bool) {
	sep := byte(':')
	if !strings.Contains(spec, ":") && strings.Contains(spec, "/") {
		sep = '/'
	}
	var out []string
	for spec != "" {
		if spec[0] == '[' {
			end := strings.IndexByte(spec, ']')
			if end < 0 {
				return nil, false
			}
			out = append(out, spec[1:end])
			spec = spec[end+1:]
			if spec == "" {
				break
			}
			if spec[0] != sep {
				return nil, false
			}
			spec = spec[1:]
			if spec == "" {
				out = append(out, "")
			}
			continue
		}
		i := strings.IndexByte(spec, sep)
		if i < 0 {
			out = append(out, spec)
			break
		}
		out = append(out, spec[:i])
		spec = spec[i+1:]
		if spec == "" {
			out = append(out, "")
		}
	}
	return out, true
}

func parsePort(s string) (int, bool) {
	p, err := strconv.Atoi(s)
	return p, err == nil && p >= 0 && p <= 65535
}

// unixPath reports whether an ssh forwarding field names a unix socket.
func unixPath(s string) bool { return strings.Contains(s, "/") }

// parseForward parses -L/-R ([bind:]port:host:hostport) or -D
// ([bind:]port) specs; unix-socket forms are marked unsupported.
func (inv *Invocation) parseForward(c byte, spec string) error {
	kind := map[byte]string{'L': "local", 'R': "remote", 'D': "dynamic"}[c]
	bad := &UsageError{Msg: fmt.Sprintf("Bad %s forwarding specification '%s'", kind, spec)}
	if strings.Contains(spec, ":/") || strings.HasPrefix(spec, "/") {
		inv.Unsupported = append(inv.Unsupported, fmt.Sprintf("-%c %s: forwarding of unix sockets", c, spec))
		return nil
	}
	f, ok := splitForward(spec)
	if !ok {
		return bad
	}
	var fw Forward
	if c == 'D' {
		switch len(f) {
		case 1:
			fw.BindPort, ok = parsePort(f[0])
		case 2:
			fw.BindHost = f[0]
			fw.BindPort, ok = parsePort(f[1])
		default:
			ok = false
		}
		if !ok || fw.BindPort == 0 {
			return bad
		}
		inv.Dynamic = append(inv.Dynamic, fw)
		return nil
	}
	switch len(f) {
	case 3:
		fw.Host = f[1]
		fw.BindPort, ok = parsePort(f[0])
		if ok {
			fw.Port, ok = parsePort(f[2])
		}
	case 4:
		fw.BindHost, fw.Host = f[0], f[2]
		fw.BindPort, ok = parsePort(f[1])
		if ok {
			fw.Port, ok = parsePort(f[3])
		}
	default:
		ok = false
	}
	if !ok || fw.Host == "" || fw.Port == 0 || (c == 'L' && fw.BindPort == 0) {
		return bad
	}
	if c == 'L' {
		inv.Local = append(inv.Local, fw)
	} else {
		inv.Remote = append(inv.Remote, fw)
	}
	return nil
}

// parseStdioForward parses -W host:port.
func (inv *Invocation) parseStdioForward(spec string) error {
	bad := &UsageError{Msg: fmt.Sprintf("Bad stdio forwarding specification '%s'", spec)}
	if inv.StdioForward != nil {
		return &UsageError{Msg: "stdio forward already specified"}
	}
	f, ok := splitForward(spec)
	if !ok || len(f) != 2 || f[0] == "" || unixPath(f[0]) {
		return bad
	}
	p, ok := parsePort(f[1])
	if !ok || p == 0 {
		return bad
	}
	inv.StdioForward = &Forward{Host: f[0], Port: p}
	return nil
}

// Control commands (-O) ssh knows; fakessh answers check, exit and stop.
var controlCommands = map[string]bool{"check": true, "forward": true, "cancel": true, "exit": true, "stop": true, "proxy": true}
