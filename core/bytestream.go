package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// A byte stream (idl: BYTE STREAMS) carries bytes from a ByteWriter in one
// context to a ByteReader in another, with credit-based flow control: the
// writer never has more than the reader's window in flight, so each hop
// buffers at most one window per stream however slow the reader is.

// ByteReader is the receiving end of a byte stream.
type ByteReader struct {
	r      *Router
	rc     *Receiver
	window int64
	ctx    context.Context

	mu       sync.Mutex
	cur      []byte
	unacked  int64 // credit consumed but not yet returned
	writer   int32 // context of the writer (learned from the first chunk)
	credit   int32 // writer's credit handle
	received int64 // credit used by the writer, as seen here
	granted  int64 // credit granted in total
	eof      bool
	err      error
}

// NewByteReader creates a reader that receives from writer (a context ID,
// watched for disconnection). ctx bounds every Read.
func (r *Router) NewByteReader(ctx context.Context, writer int32) *ByteReader {
	w := r.cfg.StreamWindow
	br := &ByteReader{r: r, window: w, ctx: ctx, granted: w}
	// Bounds: a window of bytes; chunks cost at least ChunkOverhead each.
	br.rc = r.NewReceiver(WithPeer(writer), WithQueueLimit(int(w/ChunkOverhead)+16, int(w)+16))
	return br
}

// End describes this reader for the writer: where to send, and the window.
func (br *ByteReader) End() *mitogen.StreamEnd {
	return &mitogen.StreamEnd{ContextId: br.r.id, Handle: br.rc.handle, Window: br.window}
}

// next returns the next chunk, io.EOF at the end, or an error.
func (br *ByteReader) next() ([]byte, error) {
	if br.eof {
		return nil, io.EOF
	}
	if br.err != nil {
		return nil, br.err
	}
	m, ok := br.rc.TryGet()
	if !ok {
		br.flushCredit()
		var err error
		m, err = br.rc.Get(br.ctx)
		if err != nil {
			if errors.Is(err, ErrSenderClosed) {
				br.eof = true
				return nil, io.EOF
			}
			br.err = fmt.Errorf("byte stream from context %d: %w", br.writer, err)
			return nil, br.err
		}
	} else if m.IsDead() {
		d := deadFromMessage(&m)
		if d.Reason == mitogen.DeadReason_SENDER_CLOSED {
			br.eof = true
			return nil, io.EOF
		}
		br.err = fmt.Errorf("byte stream from context %d: %w", br.writer, d)
		return nil, br.err
	}
	br.writer, br.credit = m.Src, m.ReplyTo
	cost := int64(len(m.Data)) + ChunkOverhead
	br.received += cost
	if br.received > br.granted {
		br.err = fmt.Errorf("byte stream from context %d: writer exceeded its credit (%d > %d)", br.writer, br.received, br.granted)
		br.rc.Close()
		return nil, br.err
	}
	br.unacked += ChunkOverhead
	return m.Data, nil
}

// consumed returns n bytes of credit, sending it when a quarter window has
// accumulated (or, from next, when the queue ran dry).
func (br *ByteReader) consumed(n int) {
	br.unacked += int64(n)
	if br.unacked >= br.window/4 {
		br.flushCredit()
	}
}

func (br *ByteReader) flushCredit() {
	if br.unacked == 0 || br.credit == 0 {
		return
	}
	br.granted += br.unacked
	br.r.Send(&wire.Message{Dst: br.writer, Handle: br.credit, Data: marshal(&mitogen.Credit{Bytes: br.unacked})})
	br.unacked = 0
}

// Read implements io.Reader.
func (br *ByteReader) Read(p []byte) (int, error) {
	br.mu.Lock()
	defer br.mu.Unlock()
	if len(br.cur) == 0 {
		chunk, err := br.next()
		if err != nil {
			return 0, err
		}
		br.cur = chunk
	}
	n := copy(p, br.cur)
	br.cur = br.cur[n:]
	br.consumed(n)
	return n, nil
}

// WriteTo implements io.WriterTo: chunks go to w without an extra copy.
func (br *ByteReader) WriteTo(w io.Writer) (int64, error) {
	br.mu.Lock()
	defer br.mu.Unlock()
	var total int64
	for {
		if len(br.cur) == 0 {
			chunk, err := br.next()
			if err == io.EOF {
				return total, nil
			}
			if err != nil {
				return total, err
			}
			br.cur = chunk
		}
		n, err := w.Write(br.cur)
		total += int64(n)
		br.cur = br.cur[n:]
		br.consumed(n)
		if err != nil {
			return total, err
		}
	}
}

// Close stops receiving: chunks still arriving bounce, and the writer's
// next Write fails.
func (br *ByteReader) Close() error {
	br.rc.Close()
	return nil
}

// ByteWriter is the sending end of a byte stream.
type ByteWriter struct {
	r      *Router
	credit *Receiver
	ctx    context.Context

	mu     sync.Mutex
	dst    int32
	handle int32
	avail  int64
	closed bool
	err    error
}

// NewByteWriter creates a writer; Connect tells it where the reader is.
// ctx bounds every Write.
func (r *Router) NewByteWriter(ctx context.Context) *ByteWriter {
	return &ByteWriter{r: r, ctx: ctx, credit: r.NewReceiver(WithQueueLimit(4096, 1<<20))}
}

// CreditEnd describes the writer's credit handle for the reader.
func (bw *ByteWriter) CreditEnd() *mitogen.StreamEnd {
	return &mitogen.StreamEnd{ContextId: bw.r.id, Handle: bw.credit.handle}
}

// Connect sets the reader's end; the reader's window is the first credit.
func (bw *ByteWriter) Connect(reader *mitogen.StreamEnd) error {
	if reader == nil || reader.Handle == 0 || reader.Window <= 0 {
		return fmt.Errorf("byte stream: invalid reader end %v", reader)
	}
	bw.mu.Lock()
	defer bw.mu.Unlock()
	bw.dst, bw.handle, bw.avail = reader.ContextId, reader.Handle, reader.Window
	bw.r.watch(reader.ContextId, bw.credit)
	return nil
}

// waitCredit waits until at least cost credit is available.
func (bw *ByteWriter) waitCredit(cost int64) error {
	for bw.avail < cost {
		m, err := bw.credit.Get(bw.ctx)
		if err != nil {
			return fmt.Errorf("byte stream to context %d: %w", bw.dst, err)
		}
		var c mitogen.Credit
		if _, err := c.FastRead(m.Data); err != nil || c.Bytes <= 0 {
			return fmt.Errorf("byte stream to context %d: malformed credit", bw.dst)
		}
		bw.avail += c.Bytes
	}
	return nil
}

// sendChunk sends data (which the caller must not reuse) as one chunk.
func (bw *ByteWriter) sendChunk(m *wire.Message) error {
	cost := int64(len(m.Data)) + ChunkOverhead
	if err := bw.waitCredit(cost); err != nil {
		bw.err = err
		return err
	}
	bw.avail -= cost
	bw.r.Send(m)
	return nil
}

func (bw *ByteWriter) check() error {
	if bw.closed {
		return errors.New("byte stream: write after close")
	}
	if bw.err != nil {
		return bw.err
	}
	if bw.handle == 0 {
		return errors.New("byte stream: write before Connect")
	}
	// A bounced chunk shows up on the credit handle as a dead message.
	return nil
}

// maxChunk bounds one chunk by the configuration and by the window.
func (bw *ByteWriter) maxChunk() int {
	n := bw.r.cfg.MaxChunk
	if w := int(bw.r.cfg.StreamWindow/2) - ChunkOverhead; w > 0 && w < n {
		n = w
	}
	return n
}

// Write implements io.Writer. It copies p into chunks and returns when
// they are queued, waiting for credit as needed.
func (bw *ByteWriter) Write(p []byte) (int, error) {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	if err := bw.check(); err != nil {
		return 0, err
	}
	written := 0
	for len(p) > 0 {
		n := min(len(p), bw.maxChunk())
		data := make([]byte, n)
		copy(data, p[:n])
		if err := bw.sendChunk(&wire.Message{Dst: bw.dst, Handle: bw.handle, ReplyTo: bw.credit.handle, Data: data}); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// ReadFrom implements io.ReaderFrom: it reads straight into the buffer of
// the frame that will carry the bytes, so they are never copied again.
func (bw *ByteWriter) ReadFrom(src io.Reader) (int64, error) {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	if err := bw.check(); err != nil {
		return 0, err
	}
	var total int64
	size := bw.maxChunk()
	head, tail := wire.DataOffset, len(wire.Trailer)
	// Frames are carved from a slab, so that a short read (a pipe gives
	// 64 KiB at a time) costs only the bytes it used.
	var slab []byte
	for {
		// Wait for credit for a full chunk before reading, so that a slow
		// reader stops us reading the source at all.
		if err := bw.waitCredit(int64(size) + ChunkOverhead); err != nil {
			bw.err = err
			return total, err
		}
		if len(slab) < head+size+tail {
			slab = make([]byte, max(4*(head+size+tail), 4<<20))
		}
		n, err := src.Read(slab[head : head+size])
		if n > 0 {
			buf := slab[: head+n+tail : head+n+tail]
			slab = slab[head+n+tail:]
			m := &wire.Message{Dst: bw.dst, Src: bw.r.id, Auth: bw.r.id, Handle: bw.handle, ReplyTo: bw.credit.handle}
			m.Data = buf[head : head+n]
			wire.AppendHeader(buf[:0], m)
			copy(buf[head+n:], wire.Trailer)
			m.Frame = buf
			bw.avail -= int64(n) + ChunkOverhead
			bw.r.route(m, nil)
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Close ends the stream: the reader sees EOF after the bytes already sent.
func (bw *ByteWriter) Close() error {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	if bw.closed {
		return nil
	}
	bw.closed = true
	if bw.handle != 0 {
		bw.r.SendDead(bw.dst, bw.handle, &DeadError{Reason: mitogen.DeadReason_SENDER_CLOSED, Message: "end of stream"})
	}
	bw.credit.Close()
	return nil
}
