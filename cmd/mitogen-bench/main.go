// Command mitogen-bench measures mitogen-go beside its anchors in one run
// and prints a Markdown table of figures and ratios: Python mitogen 0.3.3
// (Debian's python3-mitogen, run with /usr/bin/python3) and the raw pipe
// limits of this machine. Timings are medians of repeated runs.
//
// It is also a mitogen agent (`mitogen-bench agent`), so that the contexts
// it starts run the same code.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	mitogengo "github.com/seed-a176d0ab/mitogen-go"
	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/process"
	"github.com/seed-a176d0ab/mitogen-go/transport"
)

func main() {
	mitogengo.Main() // the agent of the contexts it starts, and fakessh's ssh
	agent.TuneRuntime()
	anchor := flag.String("anchor", "bench/mitogen_anchor.py", "Python mitogen anchor script")
	calls := flag.Int("calls", 5000, "no-op calls for the round trip")
	streamMiB := flag.Int("stream-mib", 1024, "MiB relayed through a context for the stream row")
	sshSpec := flag.String("ssh", "", "measure ssh rows against this hop (ssh:root@127.0.0.1:PORT) instead")
	identity := flag.String("identity", "", "identity file for -ssh")
	mitogenBin := flag.String("mitogen", "bin/mitogen", "the mitogen CLI, for the persistent master's row (with -ssh)")
	persistReps := flag.Int("persist-reps", 11, "repetitions of the persistent master's row (with -ssh; 0 skips it)")
	flag.Parse()
	if *sshSpec != "" {
		if err := runSSH(*anchor, *sshSpec, *identity, *calls); err != nil {
			fmt.Fprintf(os.Stderr, "mitogen-bench: %v\n", err)
			os.Exit(1)
		}
		if *persistReps > 0 {
			r, err := persistRow(*mitogenBin, *sshSpec, *identity, *persistReps)
			if err != nil {
				fmt.Fprintf(os.Stderr, "mitogen-bench: persistent master row: %v\n", err)
				os.Exit(1)
			}
			printRows([]row{r})
		}
		return
	}
	if err := run(*anchor, *calls, *streamMiB); err != nil {
		fmt.Fprintf(os.Stderr, "mitogen-bench: %v\n", err)
		os.Exit(1)
	}
}

type row struct {
	name, unit   string
	ours, anchor float64
	anchorName   string
	goal         string
	higherBetter bool
}

func run(anchorScript string, calls, streamMiB int) error {
	ctx := context.Background()
	var rows []row

	// Python mitogen, measured in this run.
	py := map[string]float64{}
	if out, err := exec.Command("/usr/bin/python3", anchorScript, fmt.Sprint(calls)).Output(); err != nil {
		fmt.Fprintf(os.Stderr, "mitogen-bench: Python mitogen anchor failed (%v); its columns stay empty\n", err)
	} else if err := json.Unmarshal(bytes.TrimSpace(out), &py); err != nil {
		return fmt.Errorf("anchor output %q: %w", out, err)
	}

	// Context start + first call (median of 7).
	var starts []time.Duration
	for i := 0; i < 7; i++ {
		r := newMaster()
		t := time.Now()
		c, err := agent.Dial(ctx, r, nil, []transport.Spec{{Kind: transport.KindLocal}}, nil)
		if err != nil {
			return err
		}
		if err := c[0].Agent().Ping(ctx); err != nil {
			return err
		}
		starts = append(starts, time.Since(t))
		r.Close()
	}
	startMs := ms(median(starts))
	rows = append(rows, row{name: "local context start + first call", unit: "ms", ours: startMs, anchor: py["start_ms"], anchorName: "mitogen", goal: "≤ 1/20"})

	r := newMaster()
	defer r.Close()
	chain, err := agent.Dial(ctx, r, nil, []transport.Spec{{Kind: transport.KindLocal}}, nil)
	if err != nil {
		return err
	}
	c := chain[0]

	// No-op round trip.
	for i := 0; i < 200; i++ {
		c.Agent().Ping(ctx)
	}
	rtts, err := pingTimes(ctx, c, calls)
	if err != nil {
		return err
	}
	rttUs := us(median(rtts))
	rawRtt, err := rawPipeRTT(calls)
	if err != nil {
		return err
	}
	rows = append(rows, row{name: "no-op call round trip", unit: "µs", ours: rttUs, anchor: py["rtt_us"], anchorName: "mitogen", goal: "≤ 1/10"})
	rows = append(rows, row{name: "  raw pipe round trip, 64 B via a cat process (limit)", unit: "µs", ours: rawRtt, anchorName: "-"})

	// 1 MiB echo.
	payload := bytes.Repeat([]byte("x"), 1<<20)
	c.Agent().Echo(ctx, payload)
	k := 100
	t := time.Now()
	for i := 0; i < k; i++ {
		if _, err := c.Agent().Echo(ctx, payload); err != nil {
			return err
		}
	}
	echoMBps := float64(k*len(payload)) / time.Since(t).Seconds() / 1e6
	rows = append(rows, row{name: "1 MiB echo call", unit: "MB/s", ours: echoMBps, anchor: py["echo_mbps"], anchorName: "mitogen", goal: "≥ 10×", higherBetter: true})

	// A byte stream through a context: cat in the context, relayed both ways.
	streamBytes := int64(streamMiB) << 20
	start := func(ctx context.Context, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
		return c.Agent().StartProcess(ctx, spec)
	}
	t = time.Now()
	res, err := process.Relay(ctx, r, c.ID(), start, &mitogen.ProcessSpec{Argv: []string{"cat"}},
		process.Stdio{Stdin: io.LimitReader(zeroReader{}, streamBytes), Stdout: io.Discard, Stderr: os.Stderr})
	if err != nil || res.Status != 0 {
		return fmt.Errorf("stream relay: %v (status %d)", err, res.Status)
	}
	streamMBps := float64(streamBytes) / time.Since(t).Seconds() / 1e6
	rawMBps, err := rawPipeThroughput(streamBytes)
	if err != nil {
		return err
	}
	rows = append(rows, row{name: fmt.Sprintf("%d MiB through `cat` in a context (stdin→stdout)", streamMiB), unit: "MB/s", ours: streamMBps, anchor: rawMBps, anchorName: "raw pipe through cat", goal: "within 2× of raw", higherBetter: true})

	printTable(rows)
	return nil
}

// runSSH prints the ssh rows: context start over ssh with an empty agent
// cache and with the agent cached, and the no-op round trip, beside Python
// mitogen over the same sshd.
func runSSH(anchorScript, specText, identity string, calls int) error {
	ctx := context.Background()
	spec, err := transport.ParseSpec(specText)
	if err != nil {
		return err
	}
	py := map[string]float64{}
	out, err := exec.Command("/usr/bin/python3", anchorScript, fmt.Sprint(calls), spec.Host, fmt.Sprint(spec.Port), identity).Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mitogen-bench: Python mitogen over ssh failed (%v)\n", err)
	} else if err := json.Unmarshal(bytes.TrimSpace(out), &py); err != nil {
		return fmt.Errorf("anchor output %q: %w", out, err)
	}
	cache, err := os.MkdirTemp("", "mitogen-bench-cache-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cache)
	opts := map[string]string{agent.OptIdentity: identity, agent.OptHostKeyChecking: "ignore", agent.OptCacheDir: cache}
	start := func() (time.Duration, *core.Router, *core.Context, error) {
		r := newMaster()
		t := time.Now()
		c, err := agent.Dial(ctx, r, nil, []transport.Spec{spec}, opts)
		if err != nil {
			r.Close()
			return 0, nil, nil, err
		}
		if err := c[0].Agent().Ping(ctx); err != nil {
			r.Close()
			return 0, nil, nil, err
		}
		return time.Since(t), r, c[0], nil
	}
	first, r, _, err := start()
	if err != nil {
		return err
	}
	r.Close()
	var cached []time.Duration
	for i := 0; i < 5; i++ {
		d, r, _, err := start()
		if err != nil {
			return err
		}
		cached = append(cached, d)
		r.Close()
	}
	_, r, c, err := start()
	if err != nil {
		return err
	}
	defer r.Close()
	rtts, err := pingTimes(ctx, c, calls)
	if err != nil {
		return err
	}
	printRows([]row{
		{name: "ssh context start + first call, agent not cached", unit: "ms", ours: ms(first), anchor: py["start_ms"], anchorName: "mitogen over the same sshd", goal: "≤ 1/5"},
		{name: "ssh context start + first call, agent cached", unit: "ms", ours: ms(median(cached)), anchor: py["start_ms"], anchorName: "mitogen over the same sshd", goal: "≤ 1/5"},
		{name: "no-op call round trip over ssh", unit: "µs", ours: us(median(rtts)), anchor: py["rtt_us"], anchorName: "mitogen over the same sshd", goal: "≤ 1/10"},
	})
	return nil
}

// pingTimes times n no-op calls.
func pingTimes(ctx context.Context, c *core.Context, n int) ([]time.Duration, error) {
	rtts := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t := time.Now()
		if err := c.Agent().Ping(ctx); err != nil {
			return nil, err
		}
		rtts = append(rtts, time.Since(t))
	}
	return rtts, nil
}

func newMaster() *core.Router {
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return core.NewMaster(cfg)
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// rawPipeRTT is the median round trip of 64 bytes through a cat process.
func rawPipeRTT(n int) (float64, error) {
	cmd := exec.Command("cat")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer cmd.Wait()
	defer in.Close()
	buf := make([]byte, 64)
	var rtts []time.Duration
	for i := 0; i < n; i++ {
		t := time.Now()
		in.Write(buf)
		if _, err := io.ReadFull(out, buf); err != nil {
			return 0, err
		}
		rtts = append(rtts, time.Since(t))
	}
	return us(median(rtts)), nil
}

// rawPipeThroughput relays n bytes through a cat process with 64 KiB writes.
func rawPipeThroughput(n int64) (float64, error) {
	cmd := exec.Command("cat")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	t := time.Now()
	go func() {
		buf := make([]byte, 64<<10)
		for left := n; left > 0; left -= int64(len(buf)) {
			in.Write(buf[:min(int64(len(buf)), left)])
		}
		in.Close()
	}()
	got, err := io.CopyBuffer(io.Discard, out, make([]byte, 64<<10))
	if err != nil || got != n {
		return 0, fmt.Errorf("raw pipe: %d of %d bytes: %v", got, n, err)
	}
	cmd.Wait()
	return float64(n) / time.Since(t).Seconds() / 1e6, nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func printTable(rows []row) {
	fmt.Println("| measure | mitogen-go | anchor | anchor value | ratio (ours/anchor) | goal |")
	fmt.Println("|---|---|---|---|---|---|")
	printRows(rows)
}

func printRows(rows []row) {
	var b strings.Builder
	for _, r := range rows {
		anchor, ratio := "-", "-"
		if r.anchor > 0 {
			anchor = fmt.Sprintf("%.4g %s", r.anchor, r.unit)
			ratio = fmt.Sprintf("%.3g×", r.ours/r.anchor)
		}
		fmt.Fprintf(&b, "| %s | %.4g %s | %s | %s | %s | %s |\n", r.name, r.ours, r.unit, r.anchorName, anchor, ratio, r.goal)
	}
	fmt.Print(b.String())
}
