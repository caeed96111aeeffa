package main

import (
	"fmt"

	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"os"
	"slices"
	"time"
)

func cmdPing(args []string) int {
	var cf commonFlags
	fs := newFlagSet("ping", "mitogen ping [--via SPEC]... [-n N]\n\nCalls Agent:ping N times in the last context of the chain and prints\nround-trip percentiles.")
	cf.register(fs)
	n := fs.Int("n", 1000, "number of calls")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *n < 1 {
		fmt.Fprintln(os.Stderr, "mitogen ping: -n must be at least 1")
		return 2
	}
	ctx, cancel := signalContext()
	defer cancel()
	t0 := time.Now()
	var ping func() error
	var dest fmt.Stringer
	if cf.persistent() {
		// Through the persistent master: each call goes to the master,
		// which calls Agent:ping in the chain's last context.
		c, err := cf.persistClient(ctx)
		if err != nil {
			return fail(os.Stderr, "%v", err)
		}
		defer c.Close()
		pc, err := cf.withChain(func(pc *mitogen.PersistChain) error { return c.Service().Ping(ctx, pc) })
		if err != nil {
			return fail(os.Stderr, "ping %s: %v", cf.chainText(), err)
		}
		dest = chainName(cf.chainText() + " (via the persistent master)")
		ping = func() error { return c.Service().Ping(ctx, pc) }
	} else {
		r, chain, err := cf.master(ctx)
		if err != nil {
			return fail(os.Stderr, "%v", err)
		}
		defer r.Close()
		last := chain[len(chain)-1]
		dest = last
		ping = func() error { return last.Agent().Ping(ctx) }
		if err := ping(); err != nil {
			return fail(os.Stderr, "ping %s: %v", dest, err)
		}
	}
	startup := time.Since(t0)
	rtts := make([]time.Duration, 0, *n)
	for i := 0; i < *n; i++ {
		t := time.Now()
		if err := ping(); err != nil {
			return fail(os.Stderr, "ping %s: %v", dest, err)
		}
		rtts = append(rtts, time.Since(t))
	}
	slices.Sort(rtts)
	pct := func(p float64) time.Duration { return rtts[min(len(rtts)-1, int(p*float64(len(rtts))))] }
	fmt.Printf("context %s: start+first call %v; %d calls: p50 %v p90 %v p99 %v max %v\n",
		dest, startup.Round(time.Microsecond), *n, pct(0.5), pct(0.9), pct(0.99), rtts[len(rtts)-1])
	return 0
}

// chainName is a chain's text as a fmt.Stringer.
type chainName string

func (c chainName) String() string { return string(c) }
