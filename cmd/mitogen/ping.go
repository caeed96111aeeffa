package main

import (
	"fmt"
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
	r, chain, err := cf.master(ctx)
	if err != nil {
		return fail(os.Stderr, "%v", err)
	}
	defer r.Close()
	dest := chain[len(chain)-1]
	if err := dest.Agent().Ping(ctx); err != nil {
		return fail(os.Stderr, "ping %s: %v", dest, err)
	}
	startup := time.Since(t0)
	rtts := make([]time.Duration, 0, *n)
	for i := 0; i < *n; i++ {
		t := time.Now()
		if err := dest.Agent().Ping(ctx); err != nil {
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
