package core_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/transport/fd"
)

// benchAgentEnv makes the test binary an agent (see TestMain), so that the
// *Process benchmarks measure a child in its own process, as a local
// context is.
const benchAgentEnv = "MITOGEN_CORE_BENCH_AGENT"

func TestMain(m *testing.M) {
	if os.Getenv(benchAgentEnv) == "1" {
		os.Exit(runBenchAgent())
	}
	os.Exit(m.Run())
}

// runBenchAgent serves the Agent service on stdin/stdout, as `mitogen
// agent` does (with the same runtime settings).
func runBenchAgent() int {
	agent.TuneRuntime()
	conn, err := fd.StdioConn()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	r, err := core.Boot(conn, cfg, func(r *core.Router) { (&agent.Service{Router: r}).Serve() })
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-r.Done()
	return 0
}

// benchProcessChild starts the test binary as an agent process below a new
// master.
func benchProcessChild(b *testing.B) *core.Context {
	b.Helper()
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	m := core.NewMaster(cfg)
	b.Cleanup(func() { m.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := &fd.Local{Exe: os.Args[0], Args: []string{}, Env: append(os.Environ(), benchAgentEnv+"=1")}
	conn, err := l.Start(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Kill(); conn.Wait() })
	c, _, err := m.StartChild(ctx, conn, 1, "bench")
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func benchInProcessChild(b *testing.B) *core.Context {
	b.Helper()
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	m := core.NewMaster(cfg)
	b.Cleanup(func() { m.Close() })
	a, bb := socketpair(b)
	ch := make(chan *core.Router, 1)
	go func() {
		r, err := core.Boot(bb, cfg, func(r *core.Router) { (&agent.Service{Router: r}).Serve() })
		if err != nil {
			ch <- nil
			return
		}
		ch <- r
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := m.StartChild(ctx, a, 1, "bench")
	if err != nil {
		b.Fatal(err)
	}
	child := <-ch
	if child == nil {
		b.Fatal("child did not boot")
	}
	b.Cleanup(func() { child.Close() })
	return c
}

func benchPing(b *testing.B, c *core.Context) {
	ctx := context.Background()
	for range 100 {
		if err := c.Agent().Ping(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	var ts []time.Duration
	b.ResetTimer()
	for b.Loop() {
		t := time.Now()
		if err := c.Agent().Ping(ctx); err != nil {
			b.Fatal(err)
		}
		ts = append(ts, time.Since(t))
	}
	reportMedian(b, ts)
}

// reportMedian reports the median of ts (as med-ns/op): on a busy machine
// the mean is mostly the few calls that waited for a CPU.
func reportMedian(b *testing.B, ts []time.Duration) {
	if len(ts) == 0 {
		return
	}
	slices.Sort(ts)
	b.ReportMetric(float64(ts[len(ts)/2].Nanoseconds()), "med-ns/op")
}

func benchEcho(b *testing.B, c *core.Context, size int) {
	ctx := context.Background()
	payload := bytes.Repeat([]byte("x"), size)
	if _, err := c.Agent().Echo(ctx, payload); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		got, err := c.Agent().Echo(ctx, payload)
		if err != nil || len(got) != size {
			b.Fatalf("echo: %v (%d bytes)", err, len(got))
		}
	}
}

// BenchmarkRoundTrip: a no-op call to a child in this process.
func BenchmarkRoundTrip(b *testing.B) { benchPing(b, benchInProcessChild(b)) }

// BenchmarkRoundTripProcess: a no-op call to a child in its own process
// (as a local context).
func BenchmarkRoundTripProcess(b *testing.B) { benchPing(b, benchProcessChild(b)) }

// BenchmarkEcho1MiB: echo of 1 MiB by a child in this process.
func BenchmarkEcho1MiB(b *testing.B) { benchEcho(b, benchInProcessChild(b), 1<<20) }

// BenchmarkEcho1MiBProcess: echo of 1 MiB by a child in its own process.
func BenchmarkEcho1MiBProcess(b *testing.B) { benchEcho(b, benchProcessChild(b), 1<<20) }

// BenchmarkRawPipeRoundTrip is the limit the round trip is measured
// against: 64 bytes through a cat process over pipes.
func BenchmarkRawPipeRoundTrip(b *testing.B) {
	cmd := exec.Command("cat")
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Skipf("cat: %v", err)
	}
	defer cmd.Wait()
	defer in.Close()
	buf := make([]byte, 64)
	var ts []time.Duration
	b.ResetTimer()
	for b.Loop() {
		t := time.Now()
		if _, err := in.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(out, buf); err != nil {
			b.Fatal(err)
		}
		ts = append(ts, time.Since(t))
	}
	reportMedian(b, ts)
}
