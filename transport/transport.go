// Package transport defines how a context's byte stream comes to be: a
// Transport starts an agent somewhere and yields the stream to it. Specs
// name transports on the command line: "local", "ssh:[user@]host[:port]",
// "sudo:[user]".
package transport

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Conn is the byte stream of a started agent.
type Conn interface {
	io.ReadWriteCloser
	// Wait waits for the agent process (when there is one) to exit after the
	// stream ended, and returns how it ended.
	Wait() error
	// Kill ends the agent process at once.
	Kill() error
}

// Transport starts agents of one kind.
type Transport interface {
	// Start starts an agent and returns its byte stream. The agent then
	// expects the Boot frame (idl: BOOTSTRAP) as the first frame.
	Start(ctx context.Context) (Conn, error)
	// String describes the transport for logs and errors.
	String() string
}

// Kind is the transport kind of a spec.
type Kind string

// Transport kinds.
const (
	KindLocal Kind = "local"
	KindSSH   Kind = "ssh"
	KindSudo  Kind = "sudo"
)

// Spec is a parsed transport spec.
type Spec struct {
	Kind Kind
	User string // ssh: login user; sudo: target user (default root)
	Host string // ssh only
	Port int    // ssh only; 0 for the default
}

func (s Spec) String() string {
	switch s.Kind {
	case KindSSH:
		out := "ssh:"
		if s.User != "" {
			out += s.User + "@"
		}
		out += s.Host
		if s.Port != 0 {
			out += ":" + strconv.Itoa(s.Port)
		}
		return out
	case KindSudo:
		return "sudo:" + s.User
	}
	return string(s.Kind)
}

// ParseSpec parses one hop: "local", "ssh:[user@]host[:port]" or
// "sudo:[user]".
func ParseSpec(s string) (Spec, error) {
	kind, rest, _ := strings.Cut(s, ":")
	switch Kind(kind) {
	case KindLocal:
		if rest != "" {
			return Spec{}, fmt.Errorf("transport spec %q: local takes no argument", s)
		}
		return Spec{Kind: KindLocal}, nil
	case KindSSH:
		sp := Spec{Kind: KindSSH}
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			sp.User, rest = rest[:at], rest[at+1:]
			if sp.User == "" {
				return Spec{}, fmt.Errorf("transport spec %q: empty user before '@'", s)
			}
		}
		host, port := rest, ""
		if strings.HasPrefix(rest, "[") {
			end := strings.Index(rest, "]")
			if end < 0 {
				return Spec{}, fmt.Errorf("transport spec %q: unclosed '[' in IPv6 address", s)
			}
			host, port = rest[1:end], strings.TrimPrefix(rest[end+1:], ":")
		} else if i := strings.LastIndex(rest, ":"); i >= 0 {
			host, port = rest[:i], rest[i+1:]
		}
		if host == "" {
			return Spec{}, fmt.Errorf("transport spec %q: want ssh:[user@]host[:port]", s)
		}
		sp.Host = host
		if port != "" {
			p, err := strconv.Atoi(port)
			if err != nil || p < 1 || p > 65535 {
				return Spec{}, fmt.Errorf("transport spec %q: bad port %q", s, port)
			}
			sp.Port = p
		}
		return sp, nil
	case KindSudo:
		if rest == "" {
			rest = "root"
		}
		return Spec{Kind: KindSudo, User: rest}, nil
	}
	return Spec{}, fmt.Errorf("unknown transport %q in spec %q: want local, ssh:[user@]host[:port] or sudo:[user]", kind, s)
}
