package core_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"runtime"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core"
)

// patternReader yields size bytes of a repeating pseudo-random block
// without allocating; patternChecker verifies them in order.
type patternReader struct {
	block     []byte
	off, left int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), p.left)]
	n := 0
	for n < len(b) {
		k := copy(b[n:], p.block[(p.off+int64(n))%int64(len(p.block)):])
		n += k
	}
	p.off += int64(n)
	p.left -= int64(n)
	return n, nil
}

type patternChecker struct {
	block []byte
	off   int64
}

func (p *patternChecker) Write(b []byte) (int, error) {
	for i := 0; i < len(b); {
		want := p.block[(p.off+int64(i))%int64(len(p.block)):]
		k := min(len(want), len(b)-i)
		if !bytes.Equal(b[i:i+k], want[:k]) {
			return i, fmt.Errorf("byte %d differs", p.off+int64(i))
		}
		i += k
	}
	p.off += int64(len(b))
	return len(b), nil
}

// onlyReader hides WriteTo, so that io.CopyBuffer uses ByteReader.Read.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(b []byte) (int, error) { return o.r.Read(b) }

// A long byte stream between two contexts reuses its frame buffers on
// both sides (ByteWriter.ReadFrom's reads and the reader's received
// chunks go back to the router's frame pool): the bytes allocated stay
// a fraction of the bytes relayed. Fresh buffers per chunk cost zeroing
// and page faults, which made a relay lose most of its throughput on a
// busy machine (issue 11). Every byte is checked, so reuse of a buffer
// still in flight would show as corruption.
func TestByteStreamReusesFrameBuffers(t *testing.T) {
	const size = 96 << 20
	block := make([]byte, 65537) // not a divisor of any chunk size
	rand.New(rand.NewSource(1)).Read(block)
	for _, read := range []string{"WriteTo", "Read"} {
		t.Run(read, func(t *testing.T) {
			p := newStreamPair(t, core.DefaultConfig(), core.DefaultConfig())
			ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
			defer cancel()
			br := p.child.NewByteReader(ctx, p.m.ID())
			bw := p.m.NewByteWriter(ctx)
			if err := bw.Connect(br.End()); err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			errc := make(chan error, 1)
			go func() {
				_, err := bw.ReadFrom(&patternReader{block: block, left: size})
				errc <- errors.Join(err, bw.Close())
			}()
			check := &patternChecker{block: block}
			var n int64
			var err error
			if read == "WriteTo" {
				n, err = br.WriteTo(check)
			} else {
				n, err = io.CopyBuffer(check, onlyReader{br}, make([]byte, 100000))
			}
			if err != nil {
				t.Fatalf("reader: %v after %d bytes", err, n)
			}
			if err := <-errc; err != nil {
				t.Fatalf("writer: %v", err)
			}
			runtime.ReadMemStats(&after)
			if n != size {
				t.Fatalf("got %d bytes, want %d", n, size)
			}
			// Without reuse each chunk costs its frame on both sides
			// (measured: 3.2 bytes allocated per byte relayed). With it,
			// next to nothing (0.11); under the race detector, which has
			// sync.Pool drop a quarter of what it is given, up to 1.25.
			alloc := after.TotalAlloc - before.TotalAlloc
			limit := uint64(size / 4)
			if raceEnabled {
				limit = size * 2
			}
			t.Logf("%d bytes allocated relaying %d bytes", alloc, size)
			if alloc > limit {
				t.Fatalf("%d bytes allocated relaying %d bytes (limit %d): frame buffers are not reused", alloc, size, limit)
			}
		})
	}
}
