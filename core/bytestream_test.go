package core_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core"
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
	_, err := bw.ReadFrom(&countingReader{})
	if !errors.Is(err, core.ErrDisconnected) {
		t.Fatalf("got %v, want disconnected", err)
	}
}
