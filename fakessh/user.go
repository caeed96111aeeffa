package fakessh

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/process"
	"github.com/seed-a176d0ab/mitogen-go/transport"
)

// The ssh user. A destination user (user@host, -l, -o User=) other than
// the one the destination context runs as is served by a sudo hop from
// that context to the user, made once per run and user, when the context
// may sudo to them without a password (`sudo -n -u USER true` succeeds
// there); otherwise the ssh fails as ssh does when the server refuses:
// "USER@HOST: Permission denied (...)." and status 255. A command never
// runs as another user than the one named.

// maxUserHops bounds the users (with their refusals) a run remembers: a
// program naming ever new users gets refused, not ever more processes.
const maxUserHops = 64

// userKey names a user's hop from one destination context.
type userKey struct {
	dest int32
	user string
}

// userHop is the context serving one userKey, once known.
type userHop struct {
	done chan struct{}
	ctx  *core.Context
	err  error
}

// users is a run's ssh-user state.
type users struct {
	mu   sync.Mutex
	who  map[int32]string // the user each destination context runs as
	hops map[userKey]*userHop
	made []*core.Context // sudo hop contexts this run started
}

// asUser returns the context that serves user on dest: dest itself when it
// runs as user, else a sudo hop from it (see above). host is the ssh
// destination's name, for the error.
func (st *run) asUser(ctx context.Context, dest *core.Context, user, host string) (*core.Context, error) {
	if user == "" {
		return dest, nil
	}
	own, err := st.userOf(ctx, dest)
	if err != nil {
		return nil, &mitogen.CallError{Message: fmt.Sprintf("starting on %s: finding its user: %v", dest, err)}
	}
	if own == user {
		return dest, nil
	}
	k := userKey{dest.ID(), user}
	st.u.mu.Lock()
	if st.u.hops == nil {
		st.u.hops = map[userKey]*userHop{}
	}
	h, ok := st.u.hops[k]
	if !ok && len(st.u.hops) >= maxUserHops {
		st.u.mu.Unlock()
		return nil, &mitogen.CallError{Code: "EACCES", Message: fmt.Sprintf("%s@%s: Permission denied (this run already serves %d ssh users).", user, host, maxUserHops)}
	}
	if !ok {
		h = &userHop{done: make(chan struct{})}
		st.u.hops[k] = h
	}
	st.u.mu.Unlock()
	if !ok {
		h.ctx, h.err = st.sudoHop(ctx, dest, own, user, host)
		st.u.mu.Lock()
		if h.ctx != nil {
			st.u.made = append(st.u.made, h.ctx)
		}
		if h.err != nil && ctx.Err() != nil {
			delete(st.u.hops, k) // this caller gave up: the next one tries again
		}
		st.u.mu.Unlock()
		close(h.done)
	}
	select {
	case <-h.done:
		return h.ctx, h.err
	case <-ctx.Done():
		return nil, &mitogen.CallError{Message: fmt.Sprintf("%s@%s: %v", user, host, ctx.Err())}
	}
}

// userOf returns the name of the user dest runs as (id -un there), once
// per run and context.
func (st *run) userOf(ctx context.Context, dest *core.Context) (string, error) {
	st.u.mu.Lock()
	if name, ok := st.u.who[dest.ID()]; ok {
		st.u.mu.Unlock()
		return name, nil
	}
	st.u.mu.Unlock()
	out, err := process.CommandContext(ctx, dest, "id", "-un").Output()
	if err != nil {
		return "", err
	}
	name := strings.TrimSpace(string(out))
	if name == "" || strings.ContainsAny(name, " \n") {
		return "", fmt.Errorf("id -un printed %q", out)
	}
	st.u.mu.Lock()
	if st.u.who == nil {
		st.u.who = map[int32]string{}
	}
	st.u.who[dest.ID()] = name
	st.u.mu.Unlock()
	return name, nil
}

// sudoHop starts a sudo hop from dest (running as own) to user, when
// dest may sudo to user without a password.
func (st *run) sudoHop(ctx context.Context, dest *core.Context, own, user, host string) (*core.Context, error) {
	denied := func(why string) error {
		return &mitogen.CallError{Code: "EACCES", Message: fmt.Sprintf("%s@%s: Permission denied (%s runs as %s, which may not sudo to %s without a password%s).", user, host, dest, own, user, why)}
	}
	if strings.HasPrefix(user, "-") || strings.ContainsAny(user, " \t\n:@/,") {
		return nil, denied(": no such user name")
	}
	err := process.CommandContext(ctx, dest, "sudo", "-n", "-u", user, "--", "true").Run()
	if err != nil {
		var ee *process.ExitError
		if errors.As(err, &ee) {
			return nil, denied("")
		}
		return nil, denied(": " + err.Error())
	}
	spec := transport.Spec{Kind: transport.KindSudo, User: user}
	chain, err := (&agent.Dialer{}).DialFrom(ctx, st.Router, dest, []agent.Hop{{Spec: spec}})
	if err != nil {
		return nil, &mitogen.CallError{Message: fmt.Sprintf("%s@%s: sudo to %s from %s: %v", user, host, user, dest, err)}
	}
	st.Router.Logger().Debug("fakessh: ssh user served by a sudo hop", "user", user, "from", dest.String(), "context", chain[0].String())
	return chain[0], nil
}

// shutdownUserHops ends the sudo hops this run started.
func (st *run) shutdownUserHops() {
	st.u.mu.Lock()
	made := st.u.made
	st.u.made = nil
	st.u.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range made {
		wg.Add(1)
		go func() { defer wg.Done(); _ = c.Shutdown(ctx) }()
	}
	wg.Wait()
}
