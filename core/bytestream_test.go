package core_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math"
	mrand "math/rand"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

func TestByteStreamCopiesExactly(t *testing.T) {
	m, _ := testMaster(t)
	child, _, _ := startChild(t, m, 1)
	data := make([]byte, 20<<20+12345)
	rand.Read(data)

	br := child.NewByteReader(ctxT(t), 0)
	bw := m.NewByteWriter(ctxT(t))
	if err := bw.Connect(br.End()); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		// Alternate Write and ReadFrom so both paths carry data.
		half := len(data) / 2
		if _, err := bw.Write(data[:half]); err != nil {
			errc <- err
			return
		}
		_, err := bw.ReadFrom(bytes.NewReader(data[half:]))
		errc <- errors.Join(err, bw.Close())
	}()
	var got bytes.Buffer
	if _, err := got.ReadFrom(br); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("stream corrupted: got %d bytes, want %d", got.Len(), len(data))
	}
}

// countingReader counts how much of an endless source has been read.
type countingReader struct{ n atomic.Int64 }

func (c *countingReader) Read(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return len(p), nil
}

func TestByteStreamCreditBoundsInFlight(t *testing.T) {
	m, _ := testMaster(t)
	child, _, _ := startChild(t, m, 1)
	br := child.NewByteReader(ctxT(t), 0)
	ctx, cancel := context.WithCancel(context.Background())
	bw := m.NewByteWriter(ctx)
	if err := bw.Connect(br.End()); err != nil {
		t.Fatal(err)
	}
	src := &countingReader{}
	done := make(chan error, 1)
	go func() { _, err := bw.ReadFrom(src); done <- err }()
	// Nobody reads br. The writer must stop after about one window.
	window := m.Config().StreamWindow
	time.Sleep(300 * time.Millisecond)
	if n := src.n.Load(); n > window+int64(m.Config().MaxChunk) {
		t.Fatalf("writer read %d bytes from its source with nobody reading; window is %d", n, window)
	}
	// Reading some lets more through.
	before := src.n.Load()
	if _, err := io.CopyN(io.Discard, br, window*3); err != nil {
		t.Fatal(err)
	}
	if src.n.Load() <= before {
		t.Fatal("credit returned by the reader did not let the writer continue")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("writer ended with %v, want canceled", err)
	}
}

func TestByteStreamWriterSeesReaderGone(t *testing.T) {
	m, _ := testMaster(t)
	child, _, conn := startChild(t, m, 1)
	br := child.NewByteReader(ctxT(t), 0)
	bw := m.NewByteWriter(ctxT(t))
	if err := bw.Connect(br.End()); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// Whichever the writer learns first: the context's disconnection, or
	// the bounce of a chunk sent after its route was removed.
	_, err := bw.ReadFrom(&countingReader{})
	if !errors.Is(err, core.ErrDisconnected) && !errors.Is(err, core.ErrNoRoute) {
		t.Fatalf("got %v, want disconnected or no route", err)
	}
}

// levelSink records log records with their level.
type levelSink struct {
	mu   sync.Mutex
	recs []string
}

func (l *levelSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *levelSink) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	l.mu.Lock()
	l.recs = append(l.recs, b.String())
	l.mu.Unlock()
	return nil
}
func (l *levelSink) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *levelSink) WithGroup(string) slog.Handler      { return l }

// warnings returns the records at WARN or above.
func (l *levelSink) warnings() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		if strings.HasPrefix(r, "WARN") || strings.HasPrefix(r, "ERROR") {
			out = append(out, r)
		}
	}
	return out
}

func (l *levelSink) find(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if strings.Contains(r, s) {
			return true
		}
	}
	return false
}

// streamPair is a master and one child, each with its own configuration;
// the child's logs (forwarded to the master) and the master's land in log.
type streamPair struct {
	m, child *core.Router
	log      *levelSink
}

func newStreamPair(t *testing.T, masterCfg, childCfg core.Config) *streamPair {
	t.Helper()
	sink := &levelSink{}
	masterCfg.Logger = slog.New(sink)
	m := core.NewMaster(masterCfg)
	t.Cleanup(func() { m.Close() })
	a, b := socketpair(t)
	type res struct {
		r   *core.Router
		err error
	}
	ch := make(chan res, 1)
	go func() {
		r, err := core.Boot(b, childCfg, func(r *core.Router) { (&agent.Service{Router: r}).Serve() })
		ch <- res{r, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := m.StartChild(ctx, a, 1, "test"); err != nil {
		t.Fatalf("StartChild: %v", err)
	}
	got := <-ch
	if got.err != nil {
		t.Fatalf("Boot: %v", got.err)
	}
	t.Cleanup(func() { got.r.Close() })
	return &streamPair{m: m, child: got.r, log: sink}
}

func windowCfg(w int64) core.Config {
	c := core.DefaultConfig()
	c.StreamWindow = w
	return c
}

// A process printing many small flushed lines relayed with a small and
// the default window: every byte arrives, and no credit is ever dropped (no
// warning at all). "pipe" is a process slower than the relay (as under CPU
// load): each line is written to a pipe only once the previous one reached
// the reader, so each is a chunk and each returns credit. "write" is a fast
// producer calling Write once per line.
func TestByteStreamFlushedLinesLoseNoCredit(t *testing.T) {
	const lines = 150000
	for _, window := range []int64{1000, 4 << 20} {
		for _, how := range []string{"pipe", "write"} {
			t.Run(fmt.Sprintf("window=%d/%s", window, how), func(t *testing.T) {
				// The process runs on the child; its reader (the client) on
				// the master, whose window it is.
				p := newStreamPair(t, windowCfg(window), core.DefaultConfig())
				ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
				defer cancel()
				br := p.m.NewByteReader(ctx, p.child.ID())
				bw := p.child.NewByteWriter(ctx)
				if err := bw.Connect(br.End()); err != nil {
					t.Fatal(err)
				}
				want := sha256.New()
				got := &lineCounter{w: sha256.New(), lines: make(chan struct{}, lines)}
				var out io.Writer = bw
				pumped := make(chan error, 1)
				if how == "pipe" {
					pr, pw, err := os.Pipe()
					if err != nil {
						t.Fatal(err)
					}
					out = pw
					go func() {
						_, err := bw.ReadFrom(pr)
						pr.Close()
						pumped <- errors.Join(err, bw.Close())
					}()
				}
				go func() {
					var err error
					for i := 0; i < lines && err == nil; i++ {
						line := fmt.Sprintf("line %d\n", i)
						want.Write([]byte(line))
						_, err = out.Write([]byte(line))
						if how == "pipe" && err == nil {
							select {
							case <-got.lines:
							case <-ctx.Done():
								err = ctx.Err()
							}
						}
					}
					if how == "pipe" {
						out.(*os.File).Close()
					} else {
						pumped <- errors.Join(err, bw.Close())
					}
				}()
				n, err := br.WriteTo(got)
				if err != nil {
					t.Fatalf("reader: %v after %d bytes", err, n)
				}
				if err := <-pumped; err != nil {
					t.Fatalf("writer: %v", err)
				}
				if !bytes.Equal(got.w.Sum(nil), want.Sum(nil)) {
					t.Fatalf("output differs (%d bytes received)", n)
				}
				if w := p.log.warnings(); len(w) > 0 {
					t.Fatalf("%d warnings logged, first: %s", len(w), w[0])
				}
			})
		}
	}
}

// lineCounter hashes what it is given and signals each newline.
type lineCounter struct {
	w     hash.Hash
	lines chan struct{}
}

func (l *lineCounter) Write(p []byte) (int, error) {
	l.w.Write(p)
	for range bytes.Count(p, []byte("\n")) {
		l.lines <- struct{}{}
	}
	return len(p), nil
}

// 20,000,000 bytes of a process's stdin arrive intact whatever the
// reader's window, including windows smaller than one chunk.
func TestByteStream20MBAnyWindow(t *testing.T) {
	const size = 20000000
	for _, window := range []int64{1000, 100000, 4 << 20} {
		t.Run(fmt.Sprintf("window=%d", window), func(t *testing.T) {
			p := newStreamPair(t, core.DefaultConfig(), windowCfg(window))
			copyThrough(t, p, size)
			if w := p.log.warnings(); len(w) > 0 {
				t.Fatalf("%d warnings logged, first: %s", len(w), w[0])
			}
		})
	}
}

// copyThrough sends size pseudo-random bytes from the master to the child
// (half with Write, half with ReadFrom) and checks what arrives.
func copyThrough(t *testing.T, p *streamPair, size int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	br := p.child.NewByteReader(ctx, p.m.ID())
	bw := p.m.NewByteWriter(ctx)
	if err := bw.Connect(br.End()); err != nil {
		t.Fatal(err)
	}
	want := sha256.New()
	src := io.TeeReader(io.LimitReader(mrand.New(mrand.NewSource(int64(size))), int64(size)), want)
	errc := make(chan error, 1)
	go func() {
		half := make([]byte, size/2)
		if _, err := io.ReadFull(src, half); err != nil {
			errc <- err
			return
		}
		if _, err := bw.Write(half); err != nil {
			errc <- err
			return
		}
		_, err := bw.ReadFrom(src)
		errc <- errors.Join(err, bw.Close())
	}()
	got := sha256.New()
	n, err := br.WriteTo(got)
	if err != nil {
		t.Fatalf("reader: %v after %d bytes", err, n)
	}
	if err := <-errc; err != nil {
		t.Fatalf("writer: %v", err)
	}
	if n != int64(size) || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("got %d bytes, want %d; digests match: %v", n, size, bytes.Equal(got.Sum(nil), want.Sum(nil)))
	}
}

// The smallest window (one byte of payload per chunk) works; a smaller one
// is raised to it, and a writer refuses a reader end that offers less.
func TestByteStreamMinimumWindow(t *testing.T) {
	p := newStreamPair(t, core.DefaultConfig(), windowCfg(core.MinStreamWindow))
	copyThrough(t, p, 30000)

	// A window below the minimum is an invalid Config (Boot and
	// NewMasterChecked refuse it); NewMaster, which cannot fail, raises it.
	if err := windowCfg(1).Validate(); err == nil || !strings.Contains(err.Error(), "StreamWindow") {
		t.Fatalf("Validate of a window of 1: %v, want an error naming StreamWindow", err)
	}
	if _, err := core.NewMasterChecked(windowCfg(1)); err == nil {
		t.Fatal("NewMasterChecked accepted a window of 1")
	}
	small := newStreamPair(t, windowCfg(1), core.DefaultConfig())
	br := small.m.NewByteReader(ctxT(t), 1)
	if w := br.End().Window; w != core.MinStreamWindow {
		t.Fatalf("window of 1 configured: reader grants %d, want the minimum %d", w, core.MinStreamWindow)
	}
	end := br.End()
	end.Window = core.MinStreamWindow - 1
	err := small.child.NewByteWriter(ctxT(t)).Connect(end)
	if err == nil || !strings.Contains(err.Error(), "minimum") {
		t.Fatalf("Connect to a window below the minimum: %v, want an error naming the minimum", err)
	}
}

// A writer that ignores credit and floods the reader: the reader fails with
// an overrun after the bytes it accepted, never skips bytes and reports EOF,
// and the writer is told (Dead{OVERFLOW} on its credit handle).
func TestByteStreamOverrunEndsStreamForBothEnds(t *testing.T) {
	p := newStreamPair(t, core.DefaultConfig(), core.DefaultConfig())
	br := p.child.NewByteReader(ctxT(t), 0)
	end := br.End()
	// Chunks sized so that four fit the reader's window with their overhead
	// and a fifth does not.
	chunk := int(end.Window/4) - 100
	credit := p.m.NewReceiver(core.WithQueueLimit(64, 1<<20))
	var sent bytes.Buffer
	for i := range 6 {
		data := bytes.Repeat([]byte{byte('a' + i)}, chunk)
		sent.Write(data)
		p.m.Send(&wire.Message{Dst: end.ContextId, Handle: end.Handle, ReplyTo: credit.Handle(), Data: data})
	}
	// The writer hears of the overrun before the reader reads anything.
	_, err := credit.Get(ctxT(t))
	if !errors.Is(err, core.ErrOverflow) {
		t.Fatalf("hostile writer's credit handle got %v, want Dead{OVERFLOW}", err)
	}
	p.m.SendDead(end.ContextId, end.Handle, &core.DeadError{Reason: mitogen.DeadReason_SENDER_CLOSED, Message: "end"})
	var got bytes.Buffer
	_, err = got.ReadFrom(br)
	if err == nil || !errors.Is(err, core.ErrOverflow) || !strings.Contains(err.Error(), "overrun") {
		t.Fatalf("reader ended with %v after %d bytes; want an overrun error", err, got.Len())
	}
	if !bytes.HasPrefix(sent.Bytes(), got.Bytes()) {
		t.Fatal("reader returned bytes that are not a prefix of what was sent")
	}
}

// A writer told a larger window than the reader granted overruns it: its
// own Write fails soon after, and so does the reader.
func TestByteStreamOverrunFailsWriter(t *testing.T) {
	p := newStreamPair(t, core.DefaultConfig(), windowCfg(64<<10))
	br := p.child.NewByteReader(ctxT(t), 0)
	bw := p.m.NewByteWriter(ctxT(t))
	end := br.End()
	end.Window *= 16
	if err := bw.Connect(end); err != nil {
		t.Fatal(err)
	}
	var werr error
	buf := make([]byte, 4096)
	for total := 0; total < 64<<20; total += len(buf) {
		if _, werr = bw.Write(buf); werr != nil {
			break
		}
	}
	if !errors.Is(werr, core.ErrOverflow) {
		t.Fatalf("overrunning writer: Write returned %v, want an overflow error", werr)
	}
	_, rerr := io.Copy(io.Discard, br)
	if !errors.Is(rerr, core.ErrOverflow) {
		t.Fatalf("overrun reader: %v, want an overflow error", rerr)
	}
	if err := bw.Close(); err == nil {
		t.Fatal("Close of a failed writer reported no error")
	}
}

// Only the writer named at setup may send to a reader's data handle, and
// only the reader named in Connect may send credit to a writer: anyone else
// gets Dead{REFUSED}, including other code of the reader's own context, and
// the stream carries on unharmed.
func TestByteStreamRefusesOtherSenders(t *testing.T) {
	m, _ := testMaster(t)
	child, _, _ := startChild(t, m, 1)
	stranger, _, _ := startChild(t, m, 2)
	br := child.NewByteReader(ctxT(t), m.ID())
	bw := m.NewByteWriter(ctxT(t))
	if err := bw.Connect(br.End()); err != nil {
		t.Fatal(err)
	}
	end, credit := br.End(), bw.CreditEnd()
	bounces := stranger.NewReceiver()
	// Data from a third context, and credit to the writer from it.
	stranger.Send(&wire.Message{Dst: end.ContextId, Handle: end.Handle, ReplyTo: bounces.Handle(), Data: []byte("forged data")})
	if _, err := bounces.Get(ctxT(t)); !errors.Is(err, core.ErrRefused) {
		t.Fatalf("stranger's data: %v, want Dead{REFUSED}", err)
	}
	stranger.Send(&wire.Message{Dst: credit.ContextId, Handle: credit.Handle, ReplyTo: bounces.Handle(), Data: fastMarshal(&mitogen.Credit{Bytes: 1 << 30})})
	if _, err := bounces.Get(ctxT(t)); !errors.Is(err, core.ErrRefused) {
		t.Fatalf("stranger's credit: %v, want Dead{REFUSED}", err)
	}
	// The reader's own context is not its writer either.
	local := child.NewReceiver()
	child.Send(&wire.Message{Dst: end.ContextId, Handle: end.Handle, ReplyTo: local.Handle(), Data: []byte("local forgery")})
	if _, err := local.Get(ctxT(t)); !errors.Is(err, core.ErrRefused) {
		t.Fatalf("local non-writer's data: %v, want Dead{REFUSED}", err)
	}
	// A stranger's end of stream does not end it either.
	stranger.SendDead(end.ContextId, end.Handle, &core.DeadError{Reason: mitogen.DeadReason_SENDER_CLOSED})

	data := make([]byte, 3<<20+7)
	rand.Read(data)
	errc := make(chan error, 1)
	go func() {
		_, err := bw.Write(data)
		errc <- errors.Join(err, bw.Close())
	}()
	var got bytes.Buffer
	if _, err := got.ReadFrom(br); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("stream changed by strangers: got %d bytes, want %d", got.Len(), len(data))
	}
}

// Credit the reader could not have owed (more than was ever sent, zero,
// negative, undecodable) ends the stream with an error at both ends.
func TestByteStreamBadCreditEndsStream(t *testing.T) {
	for name, payload := range map[string][]byte{
		"overflow": fastMarshal(&mitogen.Credit{Bytes: 64<<10 + 1}), // more than the whole window
		"huge":     fastMarshal(&mitogen.Credit{Bytes: math.MaxInt64}),
		"zero":     fastMarshal(&mitogen.Credit{Bytes: 0}),
		"negative": fastMarshal(&mitogen.Credit{Bytes: -5}),
		"garbage":  []byte{0xff, 0x01},
	} {
		t.Run(name, func(t *testing.T) {
			p := newStreamPair(t, core.DefaultConfig(), windowCfg(64<<10))
			br := p.child.NewByteReader(ctxT(t), 0)
			bw := p.m.NewByteWriter(ctxT(t))
			if err := bw.Connect(br.End()); err != nil {
				t.Fatal(err)
			}
			// The reader's context (the only one the writer accepts credit
			// from) sends credit it cannot owe.
			c := bw.CreditEnd()
			p.child.Send(&wire.Message{Dst: c.ContextId, Handle: c.Handle, Data: payload})
			var werr error
			buf := make([]byte, 1000)
			for total := 0; total < 16<<20 && werr == nil; total += len(buf) {
				_, werr = bw.Write(buf)
			}
			if werr == nil || !strings.Contains(werr.Error(), "credit") {
				t.Fatalf("writer after bad credit: %v, want a credit error", werr)
			}
			if _, err := io.Copy(io.Discard, br); err == nil || !strings.Contains(err.Error(), "credit") {
				t.Fatalf("reader after bad credit: %v, want the writer's credit error", err)
			}
		})
	}
}
