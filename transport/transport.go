package transport

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/seed-a176d0ab/mitogen-go/transport/fd"
)

// Conn is the byte stream of a started agent.
type Conn = fd.Conn

// Transport starts agents of one kind.
type Transport interface {
	// Start starts an agent and returns its byte stream. The agent then
	// expects the Boot frame (idl: BOOTSTRAP) as the first frame.
	Start(ctx context.Context) (Conn, error)
	// String describes the transport for logs and errors.
	String() string
}

// Kind is the connection method of a spec: the text before its first ':'.
type Kind string

// Built-in kinds (each registered by its own package; see Method).
const (
	KindLocal   Kind = "local"
	KindSSH     Kind = "ssh"
	KindSudo    Kind = "sudo"
	KindSu      Kind = "su"
	KindDoas    Kind = "doas"
	KindSetns   Kind = "setns"
	KindDocker  Kind = "docker"
	KindPodman  Kind = "podman"
	KindKubectl Kind = "kubectl"
	KindLXC     Kind = "lxc"
	KindLXD     Kind = "lxd"
)

// Spec is a parsed hop spec. What User and Host mean is the method's to
// say (see each method's Syntax); the text form is always
// "kind[:[user@]host[:port]]", or "kind:user" when there is no host.
type Spec struct {
	Kind Kind
	User string // ssh: login user; sudo, su, doas: target user; containers: user inside
	Host string // ssh: host; docker, podman, lxc, lxd: container; kubectl: pod; setns: target
	Port int    // ssh only; 0 for the default
}

// String is the spec's text form, which the method's parser reads back
// to the same Spec.
func (s Spec) String() string {
	out := string(s.Kind)
	if s.Host == "" {
		if s.User != "" {
			out += ":" + s.User
		}
		return out
	}
	out += ":"
	if s.User != "" {
		out += s.User + "@"
	}
	host := s.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	out += host
	if s.Port != 0 {
		out += ":" + strconv.Itoa(s.Port)
	}
	return out
}

// ParseSpec parses one hop with the Default registry's methods.
func ParseSpec(s string) (Spec, error) { return Default.ParseSpec(s) }

// SplitUserHost splits "[user@]host[:port]" (host may be a bracketed IPv6
// address) for methods whose argument has that shape. allowPort says
// whether a port may be given.
func SplitUserHost(arg string, allowPort bool) (user, host string, port int, err error) {
	rest := arg
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		user, rest = rest[:at], rest[at+1:]
		if user == "" {
			return "", "", 0, errorf("empty user before '@'")
		}
	}
	portText := ""
	switch {
	case strings.HasPrefix(rest, "["):
		end := strings.Index(rest, "]")
		if end < 0 {
			return "", "", 0, errorf("unclosed '[' in IPv6 address")
		}
		host, portText = rest[1:end], rest[end+1:]
		if portText != "" {
			if !strings.HasPrefix(portText, ":") {
				return "", "", 0, errorf("unexpected %q after ']'", portText)
			}
			portText = portText[1:]
			if portText == "" {
				return "", "", 0, errorf("empty port")
			}
		}
	case allowPort && strings.Contains(rest, ":"):
		i := strings.LastIndex(rest, ":")
		host, portText = rest[:i], rest[i+1:]
		if portText == "" {
			return "", "", 0, errorf("empty port")
		}
	default:
		host = rest
	}
	if host == "" {
		return "", "", 0, errorf("no host")
	}
	if strings.ContainsAny(host, " \t\n/") || strings.HasPrefix(host, "-") {
		return "", "", 0, errorf("bad name %q", host)
	}
	if strings.HasPrefix(user, "-") || strings.ContainsAny(user, " \t\n") {
		return "", "", 0, errorf("bad user %q", user)
	}
	if portText != "" {
		if !allowPort {
			return "", "", 0, errorf("no port may be given")
		}
		p, perr := strconv.Atoi(portText)
		if perr != nil || p < 1 || p > 65535 {
			return "", "", 0, errorf("bad port %q", portText)
		}
		port = p
	}
	return user, host, port, nil
}

// ParseUser is the spec parser of methods that become a user on the same
// host ("sudo:postgres", "su:", "doas"): the argument is the user, root
// when empty.
func ParseUser(kind Kind) func(string) (Spec, error) {
	return func(arg string) (Spec, error) {
		if arg == "" {
			arg = "root"
		}
		if strings.ContainsAny(arg, ", \t\n/") || strings.HasPrefix(arg, "-") {
			return Spec{}, fmt.Errorf("bad user name %q", arg)
		}
		return Spec{Kind: kind, User: arg}, nil
	}
}
