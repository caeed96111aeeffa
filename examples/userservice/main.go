// Command userservice is an example of a program serving its own Thrift
// service in every context it starts, with nothing installed on the far
// hosts: the service is declared in idl/userservice.thrift (which includes
// idl/types.thrift), compiled by mitogen-gen into gen/, registered with
// mitogen.WithService, and shipped with the binary itself, which the
// bootstrap copies to each host as the context's agent.
//
// It starts a chain of contexts (each hop started by the one before it),
// calls HostInfo:describe in each with the generated typed client, and
// then calls a method the service does not declare, which comes back as a
// Thrift TApplicationException UNKNOWN_METHOD (what an older binary on the
// far side would answer to a newer master).
//
//	userservice -via ssh:user@host,sudo:root [-identity FILE] [-known-hosts FILE]
//	            [-sudo-password-file FILE] [-path FILE]
//
// Regenerate gen/ with `make gen` at the repository root.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/examples/userservice/gen/userservice"
	"github.com/seed-a176d0ab/mitogen-go/examples/userservice/gen/usertypes"
	"github.com/seed-a176d0ab/mitogen-go/transport/ssh"
	"github.com/seed-a176d0ab/mitogen-go/transport/sudo"
)

func main() {
	// First thing: in a context this binary serves as the agent, with
	// HostInfo registered, and never returns there.
	mitogen.Main(mitogen.WithService(register))

	via := flag.String("via", "local", "comma-separated hops: ssh:[user@]host[:port], sudo[:user], local, ...")
	identity := flag.String("identity", "", "ssh identity file (ssh -i)")
	knownHosts := flag.String("known-hosts", "", "ssh known_hosts file (UserKnownHostsFile)")
	sudoPasswordFile := flag.String("sudo-password-file", "", "file holding the password sudo asks")
	path := flag.String("path", "", "file each context reads the first lines of")
	timeout := flag.Duration("timeout", 2*time.Minute, "give up after this long")
	flag.Parse()
	if err := run(*via, *identity, *knownHosts, *sudoPasswordFile, *path, *timeout, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "userservice: %v\n", err)
		os.Exit(1)
	}
}

// register serves HostInfo in a context's router.
func register(r *core.Router) error {
	r.Serve("HostInfo", func(ctx context.Context, method string, args []byte) (thrift.FastCodec, error) {
		return userservice.DispatchHostInfo(ctx, hostInfo{}, method, args)
	})
	return nil
}

// hostInfo implements the HostInfo service.
type hostInfo struct{}

// maxRead bounds what describe reads of a file.
const maxRead = 64 << 10

func (hostInfo) Describe(ctx context.Context, greeting, path string, maxLines int32) (*userservice.Report, error) {
	who := &usertypes.Identity{Uid: int32(os.Getuid()), Pid: int32(os.Getpid())}
	who.Host, _ = os.Hostname()
	if u, err := user.Current(); err == nil {
		who.User = u.Username
	}
	rep := &userservice.Report{Who: who, Greeting: fmt.Sprintf("%s, from %s on %s", greeting, who.User, who.Host)}
	if path == "" {
		return rep, nil
	}
	maxLines = min(max(maxLines, 0), userservice.MAX_LINES)
	f, err := os.Open(path)
	if err != nil {
		return nil, &usertypes.Unreadable{Path: path, Reason: err.Error()}
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxRead))
	for len(rep.Lines) < int(maxLines) && sc.Scan() {
		rep.Lines = append(rep.Lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, &usertypes.Unreadable{Path: path, Reason: err.Error()}
	}
	return rep, nil
}

// hops turns the -via list into hops, giving each its options.
func hops(via, identity, knownHosts, sudoPassword string) ([]mitogen.Hop, error) {
	var hs []mitogen.Hop
	for _, spec := range strings.Split(via, ",") {
		kind, arg, _ := strings.Cut(strings.TrimSpace(spec), ":")
		switch kind {
		case "":
			return nil, fmt.Errorf("empty hop in %q", via)
		case "ssh":
			o := &ssh.Options{Identity: identity}
			if knownHosts != "" {
				o.Options = []string{"UserKnownHostsFile=" + knownHosts}
			}
			hs = append(hs, mitogen.SSH(arg, o))
		case "sudo":
			hs = append(hs, mitogen.Sudo(arg, &sudo.Options{Password: sudoPassword}))
		default:
			hs = append(hs, mitogen.Hop{Spec: strings.TrimSpace(spec)})
		}
	}
	return hs, nil
}

func run(via, identity, knownHosts, sudoPasswordFile, path string, timeout time.Duration, out io.Writer) error {
	var password string
	if sudoPasswordFile != "" {
		b, err := os.ReadFile(sudoPasswordFile)
		if err != nil {
			return err
		}
		password = string(bytes.TrimRight(b, "\r\n"))
	}
	hs, err := hops(via, identity, knownHosts, password)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	m, err := mitogen.NewMaster(mitogen.DefaultConfig())
	if err != nil {
		return err
	}
	defer m.Close()

	// One hop at a time, so that every context of the chain is asked.
	var c *mitogen.Context
	for i, h := range hs {
		if c == nil {
			c, err = m.Connect(ctx, h)
		} else {
			c, err = c.Connect(ctx, h)
		}
		if err != nil {
			return fmt.Errorf("hop %d (%s): %w", i+1, h.Spec, err)
		}
		client := &userservice.HostInfoClient{Caller: c}
		rep, err := client.Describe(ctx, "hello", path, 3)
		var unreadable *usertypes.Unreadable
		switch {
		case errors.As(err, &unreadable):
			// A declared exception, raised in the context: the call worked.
			fmt.Fprintf(out, "context %d (%s): unreadable %s: %s\n", c.ID(), h.Spec, unreadable.Path, unreadable.Reason)
			continue
		case err != nil:
			return fmt.Errorf("describe in context %d: %w", c.ID(), err)
		}
		w := rep.Who
		fmt.Fprintf(out, "context %d (%s): uid=%d user=%s host=%s pid=%d greeting=%q\n", c.ID(), h.Spec, w.Uid, w.User, w.Host, w.Pid, rep.Greeting)
		for _, l := range rep.Lines {
			fmt.Fprintf(out, "context %d: line %q\n", c.ID(), l)
		}
	}
	if c == nil {
		return errors.New("no hops")
	}

	// A method HostInfo does not declare, sent with the raw Caller.
	err = c.CallFunction(ctx, "HostInfo:reboot", &userservice.HostInfoDescribeArgs{}, &userservice.HostInfoDescribeResult{})
	var ae *thrift.ApplicationException
	if !userservice.IsUnknownMethod(err) || !errors.As(err, &ae) {
		return fmt.Errorf("HostInfo:reboot gave %v, want UNKNOWN_METHOD", err)
	}
	fmt.Fprintf(out, "context %d: HostInfo:reboot: UNKNOWN_METHOD (%s)\n", c.ID(), ae.Msg())
	return nil
}
