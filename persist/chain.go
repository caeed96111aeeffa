package persist

import (
	"fmt"
	"sort"
	"strings"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/transport"
)

// Limits on a chain a client names (the master checks them before anything else).
const (
	maxHops       = 32
	maxHopOptions = 64
)

// EncodeChain turns hops into the wire form of PersistentMaster requests.
func EncodeChain(hops []agent.Hop, dial bool) (*mitogen.PersistChain, error) {
	pc := &mitogen.PersistChain{Dial: dial}
	for i, h := range hops {
		m, err := transport.Default.EncodeOptions(h.Spec.Kind, h.Options)
		if err != nil {
			return nil, fmt.Errorf("hop %d (%s): %w", i+1, h.Spec, err)
		}
		pc.Hops = append(pc.Hops, &mitogen.PersistHop{Spec: h.Spec.String(), Options: m})
	}
	return pc, nil
}

// decodeChain checks a chain from a client and returns its hops and key:
// every spec and its options, secrets left out.
func decodeChain(pc *mitogen.PersistChain) ([]agent.Hop, string, error) {
	if pc == nil || len(pc.Hops) == 0 {
		return nil, "", fmt.Errorf("no hops")
	}
	if len(pc.Hops) > maxHops {
		return nil, "", fmt.Errorf("%d hops (at most %d)", len(pc.Hops), maxHops)
	}
	hops := make([]agent.Hop, len(pc.Hops))
	var key strings.Builder
	for i, ph := range pc.Hops {
		if ph == nil {
			return nil, "", fmt.Errorf("hop %d: missing", i+1)
		}
		if len(ph.Options) > maxHopOptions {
			return nil, "", fmt.Errorf("hop %d: %d options (at most %d)", i+1, len(ph.Options), maxHopOptions)
		}
		spec, err := transport.ParseSpec(ph.Spec)
		if err != nil {
			return nil, "", fmt.Errorf("hop %d: %w", i+1, err)
		}
		opts, err := transport.Default.DecodeOptions(spec.Kind, ph.Options)
		if err != nil {
			return nil, "", fmt.Errorf("hop %d (%s): %w", i+1, spec, err)
		}
		hops[i] = agent.Hop{Spec: spec, Options: opts}
		var secret []string
		if opts != nil {
			secret = transport.SecretKeys(opts)
		}
		keys := make([]string, 0, len(ph.Options))
		for k := range ph.Options {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintf(&key, "%q{", spec.String())
		for _, k := range keys {
			if !contains(secret, k) {
				fmt.Fprintf(&key, "%q=%q;", k, ph.Options[k])
			}
		}
		key.WriteString("}")
	}
	return hops, key.String(), nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// chainName describes hops for logs and status: their specs, comma-separated.
func chainName(hops []agent.Hop) string {
	parts := make([]string, len(hops))
	for i, h := range hops {
		parts[i] = h.Spec.String()
	}
	return strings.Join(parts, ",")
}
