// Command mitogen-bench measures mitogen-go beside its anchors in one run
// and prints a Markdown table of figures and ratios: Python mitogen 0.3.3
// (Debian's python3-mitogen, run with /usr/bin/python3) and the raw pipe
// limits of this machine. Each measurement is repeated (-reps) with its
// anchor measured right after it; a row gives the medians and the median
// of the per-repetition ratios.
//
// With -json it prints rows as JSON lines instead; -table merges such
// files (one per condition, e.g. quiet and loaded) into one table with a
// column group per condition (scripts/bench.sh).
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
	"runtime"
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
	flag.IntVar(&reps, "reps", 5, "repetitions of each measurement (medians are reported)")
	only := flag.String("only", "", "comma-separated rows to measure: start,rtt,echo,stream (default all)")
	flag.StringVar(&remoteTmp, "remote-tmp", "", "with -ssh: a directory the ssh user may write, for agent caches (default: fresh ones, for root)")
	flag.BoolVar(&jsonOut, "json", false, "print rows as JSON lines (for -table)")
	table := flag.String("table", "", "merge JSON-line files into one table: NAME=FILE,NAME=FILE (e.g. quiet=q.jsonl,loaded=l.jsonl)")
	flag.Parse()
	if *table != "" {
		if err := mergeTables(os.Stdout, *table); err != nil {
			fmt.Fprintf(os.Stderr, "mitogen-bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if *only != "" {
		onlyRows = map[string]bool{}
		for _, k := range strings.Split(*only, ",") {
			onlyRows[strings.TrimSpace(k)] = true
		}
	}
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

var (
	reps    = 5
	jsonOut bool
	// remoteTmp is where the ssh rows' agent caches go (-remote-tmp).
	remoteTmp string
	onlyRows  map[string]bool // nil: all
)

func want(key string) bool { return onlyRows == nil || onlyRows[key] }

type row struct {
	name, unit   string
	ours, anchor float64
	anchorName   string
	goal         string
	higherBetter bool
	// ratio is the median of per-repetition ratios ours/anchor, each pair
	// measured side by side; 0: ours/anchor.
	ratio float64
	reps  int // repetitions behind the figures (0: not recorded)
}

func run(anchorScript string, calls, streamMiB int) error {
	ctx := context.Background()
	var rows []row

	// Python mitogen's start, measured in this run (up to 3 times;
	// medians). Its round trip and echo are measured beside ours, below.
	var py map[string]float64
	if want("start") {
		var err error
		if py, err = pythonAnchor(anchorScript, min(reps, 3), fmt.Sprint(calls)); err != nil {
			return err
		}
	}

	// Context start + first call.
	if want("start") {
		var starts []time.Duration
		for i := 0; i < max(reps, 7); i++ {
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
		rows = append(rows, row{name: "local context start + first call", unit: "ms", ours: ms(median(starts)), anchor: py["start_ms"],
			anchorName: "mitogen", goal: "≤ 1/20", reps: len(starts)})
	}
	if !want("rtt") && !want("echo") && !want("stream") {
		printTable(rows)
		return nil
	}

	r := newMaster()
	defer r.Close()
	chain, err := agent.Dial(ctx, r, nil, []transport.Spec{{Kind: transport.KindLocal}}, nil)
	if err != nil {
		return err
	}
	c := chain[0]

	// No-op round trip and 1 MiB echo: each repetition runs Python
	// mitogen's (its round trip over calls/reps calls, and its echo), then
	// ours, then, for the round trip, the raw pipe's; a ratio is the median
	// of the repetitions' ratios.
	if want("rtt") || want("echo") {
		for i := 0; i < 200; i++ {
			c.Agent().Ping(ctx)
		}
		payload := bytes.Repeat([]byte("x"), 1<<20)
		if _, err := c.Agent().Echo(ctx, payload); err != nil {
			return err
		}
		per := max(calls/reps, 200)
		var rtt, raw, rawRatios, pyRTT, pyRTTRatios, echo, pyEcho, pyEchoRatios []float64
		pyOK := true
		for i := 0; i < reps; i++ {
			var pyi map[string]float64
			if pyOK {
				var err error
				if pyi, err = pythonAnchor(anchorScript, 1, fmt.Sprint(per)); err != nil {
					return err
				}
				pyOK = len(pyi) > 0 // a failure is reported once
			}
			if want("rtt") {
				rtts, err := pingTimes(ctx, c, per)
				if err != nil {
					return err
				}
				rawRtt, err := rawPipeRTT(per)
				if err != nil {
					return err
				}
				o := us(median(rtts))
				rtt, raw, rawRatios = append(rtt, o), append(raw, rawRtt), append(rawRatios, o/rawRtt)
				if a := pyi["rtt_us"]; a > 0 {
					pyRTT, pyRTTRatios = append(pyRTT, a), append(pyRTTRatios, o/a)
				}
			}
			if want("echo") {
				k := 20
				t := time.Now()
				for j := 0; j < k; j++ {
					if _, err := c.Agent().Echo(ctx, payload); err != nil {
						return err
					}
				}
				o := float64(k*len(payload)) / time.Since(t).Seconds() / 1e6
				echo = append(echo, o)
				if a := pyi["echo_mbps"]; a > 0 {
					pyEcho, pyEchoRatios = append(pyEcho, a), append(pyEchoRatios, o/a)
				}
			}
		}
		if want("rtt") {
			rows = append(rows,
				row{name: "no-op call round trip", unit: "µs", ours: medianF(rtt), anchor: medianF(pyRTT), ratio: medianF(pyRTTRatios),
					anchorName: "mitogen", goal: "≤ 1/10", reps: reps},
				row{name: "no-op call round trip", unit: "µs", ours: medianF(rtt), anchor: medianF(raw), ratio: medianF(rawRatios),
					anchorName: "raw pipe round trip, 64 B via a cat process (limit)", goal: "≤ 2×", reps: reps})
		}
		if want("echo") {
			rows = append(rows, row{name: "1 MiB echo call", unit: "MB/s", ours: medianF(echo), anchor: medianF(pyEcho), ratio: medianF(pyEchoRatios),
				anchorName: "mitogen", goal: "≥ 10×", higherBetter: true, reps: reps})
		}
	}

	// A byte stream through a context: cat in the context, relayed both
	// ways, each repetition beside the raw pipe through cat.
	if want("stream") {
		streamBytes := int64(streamMiB) << 20
		start := func(ctx context.Context, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
			return c.Agent().StartProcess(ctx, spec)
		}
		var ours, raw, ratios []float64
		for i := 0; i < reps; i++ {
			t := time.Now()
			res, err := process.Relay(ctx, r, c.ID(), start, &mitogen.ProcessSpec{Argv: []string{"cat"}},
				process.Stdio{Stdin: io.LimitReader(untouchedReader{}, streamBytes), Stdout: io.Discard, Stderr: os.Stderr})
			if err != nil || res.Status != 0 {
				return fmt.Errorf("stream relay: %v (status %d)", err, res.Status)
			}
			o := float64(streamBytes) / time.Since(t).Seconds() / 1e6
			a, err := bestRawPipeThroughput(streamBytes)
			if err != nil {
				return err
			}
			ours, raw, ratios = append(ours, o), append(raw, a), append(ratios, o/a)
		}
		size := fmt.Sprintf("%d MiB", streamMiB)
		if streamMiB%1024 == 0 {
			size = fmt.Sprintf("%d GiB", streamMiB/1024)
		}
		rows = append(rows, row{name: size + " through `cat` in a local context (stdin→stdout)", unit: "MB/s", ours: medianF(ours),
			anchor: medianF(raw), ratio: medianF(ratios), anchorName: "raw pipe through `cat` (64 KiB writes)", goal: "≥ 0.5×",
			higherBetter: true, reps: reps})
	}

	printTable(rows)
	return nil
}

// pythonAnchor runs the Python mitogen anchor script n times with args and
// returns the median of each figure it reports. A failure leaves the
// figures out (their columns stay empty) rather than failing the run.
func pythonAnchor(script string, n int, args ...string) (map[string]float64, error) {
	runs := map[string][]float64{}
	for i := 0; i < max(n, 1); i++ {
		cmd := exec.Command("/usr/bin/python3", append([]string{script}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			fmt.Fprintf(os.Stderr, "mitogen-bench: Python mitogen anchor failed (%v); its columns stay empty:\n%s\n",
				err, strings.Join(lines[max(0, len(lines)-6):], "\n"))
			return map[string]float64{}, nil
		}
		var fig map[string]float64
		if err := json.Unmarshal(bytes.TrimSpace(out), &fig); err != nil {
			return nil, fmt.Errorf("anchor output %q: %w", out, err)
		}
		for k, v := range fig {
			runs[k] = append(runs[k], v)
		}
	}
	py := map[string]float64{}
	for k, v := range runs {
		py[k] = medianF(v)
	}
	return py, nil
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
	user := spec.User
	if user == "" {
		user = "root"
	}
	py, err := pythonAnchor(anchorScript, 1, fmt.Sprint(calls), spec.Host, fmt.Sprint(spec.Port), identity, user)
	if err != nil {
		return err
	}
	// The agent cache is a directory on the far side, made there by the
	// ssh user: under -remote-tmp when given (a directory that user may
	// write), else a fresh one here (the same machine, as root).
	var cache string
	if remoteTmp != "" {
		cache = fmt.Sprintf("%s/agent-cache-%d", remoteTmp, time.Now().UnixNano())
	} else {
		if cache, err = os.MkdirTemp("", "mitogen-bench-cache-"); err != nil {
			return err
		}
		defer os.RemoveAll(cache)
	}
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
	sshUser := "the same user and login files"
	if spec.User != "" {
		sshUser = spec.User + ", same login files"
	}
	printRows([]row{
		{name: "ssh context start + first call, agent not cached", unit: "ms", ours: ms(first), anchor: py["start_ms"], anchorName: "mitogen, same sshd and user (" + sshUser + ")", goal: "≤ 1/5"},
		{name: "ssh context start + first call, agent cached", unit: "ms", ours: ms(median(cached)), anchor: py["start_ms"], anchorName: "mitogen, same sshd and user (" + sshUser + ")", goal: "≤ 1/5"},
		{name: "no-op call round trip over ssh", unit: "µs", ours: us(median(rtts)), anchor: py["rtt_us"], anchorName: "mitogen, same sshd and user (" + sshUser + ")", goal: "≤ 1/10"},
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
	agent.ApplyEnv(&cfg)
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return core.NewMaster(cfg)
}

// untouchedReader is an endless source that hands back the buffer it is
// given as it is: it costs nothing per byte, as the raw pipe's writer,
// which writes one buffer over and over, costs nothing.
type untouchedReader struct{}

func (untouchedReader) Read(p []byte) (int, error) { return len(p), nil }

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

// bestRawPipeThroughput is the faster of rawPipeThroughput with this
// process's GOMAXPROCS and with Go's default (one per CPU), so that the
// anchor does not move with the setting under test.
func bestRawPipeThroughput(n int64) (float64, error) {
	best := 0.0
	for _, procs := range []int{runtime.GOMAXPROCS(0), runtime.NumCPU()} {
		prev := runtime.GOMAXPROCS(procs)
		v, err := rawPipeThroughput(n)
		runtime.GOMAXPROCS(prev)
		if err != nil {
			return 0, err
		}
		best = max(best, v)
		if procs == runtime.NumCPU() {
			break // one setting only
		}
	}
	return best, nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

func printTable(rows []row) {
	if !jsonOut {
		fmt.Println("| measure | mitogen-go | anchor | anchor value | ratio (ours/anchor) | goal |")
		fmt.Println("|---|---|---|---|---|---|")
	}
	printRows(rows)
}

// jsonRow is a row as -json prints it and -table reads it.
type jsonRow struct {
	Name         string  `json:"name"`
	Unit         string  `json:"unit"`
	Ours         float64 `json:"ours"`
	Anchor       float64 `json:"anchor,omitempty"`
	AnchorName   string  `json:"anchor_name"`
	Goal         string  `json:"goal,omitempty"`
	HigherBetter bool    `json:"higher_better,omitempty"`
	Ratio        float64 `json:"ratio,omitempty"`
	Reps         int     `json:"reps,omitempty"`
}

func (r row) ratioValue() float64 {
	switch {
	case r.ratio > 0:
		return r.ratio
	case r.anchor > 0:
		return r.ours / r.anchor
	}
	return 0
}

func printRows(rows []row) {
	var b strings.Builder
	for _, r := range rows {
		if jsonOut {
			j, _ := json.Marshal(jsonRow{Name: r.name, Unit: r.unit, Ours: r.ours, Anchor: r.anchor, AnchorName: r.anchorName,
				Goal: r.goal, HigherBetter: r.higherBetter, Ratio: r.ratioValue(), Reps: r.reps})
			b.Write(j)
			b.WriteByte('\n')
			continue
		}
		anchor, ratio := "-", "-"
		if r.anchor > 0 {
			anchor = fmt.Sprintf("%.4g %s", r.anchor, r.unit)
			ratio = fmt.Sprintf("%.3g×", r.ratioValue())
		}
		fmt.Fprintf(&b, "| %s | %.4g %s | %s | %s | %s | %s |\n", r.name, r.ours, r.unit, r.anchorName, anchor, ratio, r.goal)
	}
	fmt.Print(b.String())
}
