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
// context to a ByteReader in another, with credit-based flow control: each
// chunk of n bytes costs n+ChunkOverhead credit, the writer never sends a
// chunk costing more than the credit it holds, and the reader accepts no
// more than it granted. So each hop buffers at most one window per stream
// however slow the reader is, and nothing is ever dropped: a stream either
// delivers every byte or ends with an error that both ends see.
//
// Neither end's handle has a queue that can fill up: the reader's queue is
// bounded by the window it granted (a chunk beyond it is an overrun, which
// ends the stream), and the writer's credit handle adds to a counter.

// ByteReader is the receiving end of a byte stream.
type ByteReader struct {
	r      *Router
	rc     *Receiver // the data handle; messages go to deliver
	notify chan struct{}
	writer int32 // the only context that may send to the data handle
	window int64
	ctx    context.Context

	mu       sync.Mutex // one consumer at a time
	cur      []byte
	curFrame []byte // the pooled frame cur is a slice of; recycled once cur is consumed
	unacked  int64  // credit consumed but not yet returned

	qmu      sync.Mutex // shared with deliver
	q        []chunk    // chunks received, not yet consumed
	head     int
	credit   int32 // the writer's credit handle (reply_to of its chunks)
	received int64 // credit the writer used: chunk costs received
	granted  int64 // credit granted: the window plus every Credit sent
	end      error // io.EOF or why the stream failed, after the queue
}

// chunk is a received chunk's bytes and, when they came off a stream in a
// buffer of the router's frame pool, that buffer: it goes back to the pool
// once the bytes are consumed, so a steady stream allocates (almost)
// nothing and the heap does not swell (fresh buffers cost page faults and
// zeroing, most of a relay's CPU time on a busy machine).
type chunk struct {
	data, frame []byte
}

// NewByteReader creates a reader that receives from writer (a context ID):
// messages from any other context are refused, and the reader fails when
// writer disconnects. ctx bounds every Read.
func (r *Router) NewByteReader(ctx context.Context, writer int32) *ByteReader {
	w := r.cfg.StreamWindow
	br := &ByteReader{r: r, writer: writer, window: w, ctx: ctx, granted: w, notify: make(chan struct{}, 1)}
	br.rc = r.NewReceiver(WithPeer(writer), withSink(br.deliver, br.notify))
	return br
}

// End describes this reader for the writer: where to send, and the window.
func (br *ByteReader) End() *mitogen.StreamEnd {
	return &mitogen.StreamEnd{ContextId: br.r.id, Handle: br.rc.handle, Window: br.window}
}

// deliver receives a message for the data handle, on the goroutine of the
// stream it arrived on. It never blocks on the consumer.
func (br *ByteReader) deliver(m *wire.Message, in *Stream) {
	if m.Src != br.writer || m.Auth != br.writer {
		refuse(br.r, m, fmt.Sprintf("only context %d writes to this byte stream", br.writer))
		return
	}
	if m.IsDead() {
		var end error = io.EOF
		if d := deadFromMessage(m); d.Reason != mitogen.DeadReason_SENDER_CLOSED {
			end = fmt.Errorf("byte stream from context %d: %w", br.writer, d)
		}
		br.qmu.Lock()
		if br.end == nil {
			br.end = end
		}
		br.qmu.Unlock()
		wake(br.notify)
		return
	}
	br.qmu.Lock()
	if br.end != nil {
		br.qmu.Unlock()
		br.r.bounce(m, &DeadError{Reason: mitogen.DeadReason_SENDER_CLOSED,
			Message: fmt.Sprintf("byte stream reader at handle %d of context %d has ended", m.Handle, br.r.id)})
		return
	}
	br.received += int64(len(m.Data)) + ChunkOverhead
	if br.received > br.granted {
		why := &DeadError{Reason: mitogen.DeadReason_OVERFLOW, Context: br.writer,
			Message: fmt.Sprintf("byte stream overrun: context %d used %d bytes of credit at handle %d of context %d, which granted %d",
				br.writer, br.received, m.Handle, br.r.id, br.granted)}
		br.end = fmt.Errorf("byte stream from context %d: %w", br.writer, why)
		credit := m.ReplyTo
		if credit == 0 {
			credit = br.credit
		}
		br.qmu.Unlock()
		wake(br.notify)
		br.r.log.Warn("byte stream overrun; stream ended", "writer", br.writer, "handle", m.Handle, "err", why)
		if credit != 0 {
			br.r.SendDead(br.writer, credit, why)
		}
		return
	}
	if m.ReplyTo != 0 {
		br.credit = m.ReplyTo
	}
	if br.head > 0 && br.head >= len(br.q)/2 {
		n := copy(br.q, br.q[br.head:])
		clear(br.q[n:])
		br.q, br.head = br.q[:n], 0
	}
	c := chunk{data: m.Data}
	if in != nil {
		// Read off a stream: the frame is this reader's alone now (the
		// router keeps nothing of a message it delivered).
		c.frame = m.Frame
	}
	if cap(m.Frame) >= 2*len(c.data)+256 {
		// A small chunk in a large frame buffer: keep a copy, so that
		// the memory a window of tiny chunks pins stays near the window.
		c.data = append([]byte(nil), c.data...)
		if c.frame != nil {
			br.r.frames.put(c.frame)
			c.frame = nil
		}
	}
	br.q = append(br.q, c)
	br.qmu.Unlock()
	wake(br.notify)
}

// wake signals a capacity-1 notification channel without blocking.
func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// refuse answers a message from a sender a byte-stream handle was not set
// up for with Dead{REFUSED}, and logs it.
func refuse(r *Router, m *wire.Message, why string) {
	r.log.Warn("byte stream handle refused a message", "msg", m.String(), "why", why)
	r.bounce(m, &DeadError{Reason: mitogen.DeadReason_REFUSED,
		Message: fmt.Sprintf("context %d refused %s from context %d: %s", r.id, handleText(m.Handle), m.Src, why)})
}

// next makes the next chunk current (cur, curFrame), or returns io.EOF at
// the end, or an error. The chunk before must have been consumed.
func (br *ByteReader) next() error {
	br.release()
	for {
		br.qmu.Lock()
		if br.head < len(br.q) {
			c := br.q[br.head]
			br.q[br.head] = chunk{}
			br.head++
			br.qmu.Unlock()
			br.unacked += ChunkOverhead
			if len(c.data) == 0 {
				if c.frame != nil {
					br.r.frames.put(c.frame)
				}
				continue // never sent by a conforming writer; costs only its overhead
			}
			br.cur, br.curFrame = c.data, c.frame
			return nil
		}
		end := br.end
		br.qmu.Unlock()
		if end != nil {
			return end
		}
		if err := br.rc.failed(); err != nil {
			return fmt.Errorf("byte stream from context %d: %w", br.writer, err)
		}
		// About to wait: whatever was consumed goes back to the writer.
		br.flushCredit()
		select {
		case <-br.notify:
		case <-br.ctx.Done():
			return fmt.Errorf("byte stream from context %d: %w", br.writer, br.ctx.Err())
		}
	}
}

// release gives the current chunk's frame back to the router's pool once
// the chunk is consumed (nothing refers to it any more: Read copied out of
// it, and an io.Writer keeps nothing of what it was given).
func (br *ByteReader) release() {
	if len(br.cur) == 0 && br.curFrame != nil {
		br.r.frames.put(br.curFrame)
		br.cur, br.curFrame = nil, nil
	}
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
	if br.unacked == 0 {
		return
	}
	br.qmu.Lock()
	credit := br.credit
	if credit == 0 || br.end != nil {
		br.qmu.Unlock()
		return // nobody to send it to, or no more bytes will come
	}
	n := br.unacked
	br.granted += n // before sending: the writer may use it at once
	br.qmu.Unlock()
	br.unacked = 0
	br.r.Send(&wire.Message{Dst: br.writer, Handle: credit, Data: marshal(&mitogen.Credit{Bytes: n})})
}

// Read implements io.Reader.
func (br *ByteReader) Read(p []byte) (int, error) {
	br.mu.Lock()
	defer br.mu.Unlock()
	if len(br.cur) == 0 {
		if err := br.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, br.cur)
	br.cur = br.cur[n:]
	br.consumed(n)
	br.release()
	return n, nil
}

// WriteTo implements io.WriterTo: chunks go to w without an extra copy.
// A stream that fails (rather than ending) returns its error, wrapping a
// *DeadError (see IsDead).
func (br *ByteReader) WriteTo(w io.Writer) (int64, error) {
	br.mu.Lock()
	defer br.mu.Unlock()
	var total int64
	for {
		if len(br.cur) == 0 {
			err := br.next()
			if err == io.EOF {
				return total, nil
			}
			if err != nil {
				return total, err
			}
		}
		n, err := w.Write(br.cur)
		if n < 0 || n > len(br.cur) {
			n = 0 // a broken io.Writer: count nothing rather than panic
			if err == nil {
				err = io.ErrShortWrite
			}
		}
		total += int64(n)
		br.cur = br.cur[n:]
		br.consumed(n)
		if err != nil {
			return total, err
		}
	}
}

// Close stops receiving: chunks still arriving bounce, and a writer that
// has sent anything is told at once (Dead{SENDER_CLOSED} on its credit
// handle), so that its next Write fails instead of waiting for credit.
// Reads after Close fail.
func (br *ByteReader) Close() error {
	br.qmu.Lock()
	ended := br.end != nil
	if !ended {
		br.end = fmt.Errorf("byte stream from context %d: %w", br.writer,
			&DeadError{Reason: mitogen.DeadReason_SENDER_CLOSED, Message: "reader closed"})
	}
	credit := br.credit
	br.q, br.head = nil, 0
	br.qmu.Unlock()
	// cur is the consumer's (a Read may be running): left to the collector.
	br.rc.Close()
	if !ended && credit != 0 {
		br.r.SendDead(br.writer, credit, &DeadError{Reason: mitogen.DeadReason_SENDER_CLOSED,
			Message: fmt.Sprintf("the byte stream's reader at context %d closed", br.r.id), Context: br.r.id})
	}
	return nil
}

// ByteWriter is the sending end of a byte stream.
type ByteWriter struct {
	r      *Router
	credit *Receiver // the credit handle; messages go to onCredit
	notify chan struct{}
	ctx    context.Context

	mu     sync.Mutex // one Write, ReadFrom or Close at a time
	closed bool

	cmu    sync.Mutex // shared with onCredit
	dst    int32      // the reader's context and data handle
	handle int32
	window int64
	avail  int64 // credit held: window + credit received - chunk costs sent
	err    error // why the stream failed; set once
}

// NewByteWriter creates a writer; Connect tells it where the reader is.
// ctx bounds every Write.
func (r *Router) NewByteWriter(ctx context.Context) *ByteWriter {
	bw := &ByteWriter{r: r, ctx: ctx, notify: make(chan struct{}, 1)}
	bw.credit = r.NewReceiver(withSink(bw.onCredit, bw.notify))
	return bw
}

// CreditEnd describes the writer's credit handle for the reader.
func (bw *ByteWriter) CreditEnd() *mitogen.StreamEnd {
	return &mitogen.StreamEnd{ContextId: bw.r.id, Handle: bw.credit.handle}
}

// Connect sets the reader's end; the reader's window is the first credit.
// A window below MinStreamWindow, or a data handle that is not a dynamic
// one, is refused.
func (bw *ByteWriter) Connect(reader *mitogen.StreamEnd) error {
	switch {
	case reader == nil || reader.Handle < mitogen.FIRST_DYNAMIC_HANDLE:
		return fmt.Errorf("byte stream: invalid reader end %v", reader)
	case reader.Window < MinStreamWindow:
		return fmt.Errorf("byte stream: the reader at context %d offers a window of %d bytes, below the minimum of %d (CHUNK_OVERHEAD+1)",
			reader.ContextId, reader.Window, MinStreamWindow)
	}
	bw.mu.Lock()
	defer bw.mu.Unlock()
	bw.cmu.Lock()
	if bw.handle != 0 {
		bw.cmu.Unlock()
		return errors.New("byte stream: already connected")
	}
	bw.dst, bw.handle, bw.window, bw.avail = reader.ContextId, reader.Handle, reader.Window, reader.Window
	bw.cmu.Unlock()
	bw.r.watch(reader.ContextId, bw.credit)
	return nil
}

// onCredit receives a message for the credit handle, on the goroutine of
// the stream it arrived on: Credit adds to the counter, a dead message
// fails the stream. Only the reader may send here, and this router for the
// dead messages bouncing the writer's own chunks; other credit is refused,
// other dead messages ignored.
func (bw *ByteWriter) onCredit(m *wire.Message, _ *Stream) {
	bw.cmu.Lock()
	reader, handle, window := bw.dst, bw.handle, bw.window
	bw.cmu.Unlock()
	fromReader := handle != 0 && m.Src == reader && m.Auth == reader
	ownBounce := handle != 0 && m.IsDead() && m.Src == bw.r.id && m.Auth == bw.r.id
	if !fromReader && !ownBounce {
		if m.IsDead() {
			// E.g. a hop's bounce of a chunk once the reader's context is
			// gone, which the writer learns anyway by watching it. Only the
			// reader may end the stream from this side.
			bw.r.log.Debug("byte stream ignored a dead message not from its reader", "msg", m.String())
			return
		}
		why := "the byte stream is not connected"
		if handle != 0 {
			why = fmt.Sprintf("only context %d sends credit to this byte stream", reader)
		}
		refuse(bw.r, m, why)
		return
	}
	if m.IsDead() {
		bw.fail(fmt.Errorf("byte stream to context %d: %w", reader, deadFromMessage(m)), false)
		return
	}
	var c mitogen.Credit
	_, err := c.FastRead(m.Data)
	var why *DeadError
	bw.cmu.Lock()
	switch {
	case err != nil || c.Bytes <= 0:
		why = &DeadError{Reason: mitogen.DeadReason_MALFORMED,
			Message: fmt.Sprintf("malformed credit from context %d (%d bytes, %v)", reader, c.Bytes, err)}
	case c.Bytes > window-bw.avail:
		why = &DeadError{Reason: mitogen.DeadReason_OVERFLOW,
			Message: fmt.Sprintf("credit overflow: context %d returned %d bytes of credit; only %d were in flight", reader, c.Bytes, window-bw.avail)}
	default:
		bw.avail += c.Bytes
	}
	bw.cmu.Unlock()
	if why != nil {
		why.Context = reader
		bw.fail(fmt.Errorf("byte stream to context %d: %w", reader, why), true)
		return
	}
	wake(bw.notify)
}

// fail records the stream's first error and wakes the writer. With tell,
// the reader is told too (a dead message to its data handle), because it
// did not cause the error and would otherwise wait for bytes forever.
func (bw *ByteWriter) fail(err error, tell bool) error {
	bw.cmu.Lock()
	if bw.err != nil {
		err = bw.err
		bw.cmu.Unlock()
		return err
	}
	bw.err = err
	dst, handle := bw.dst, bw.handle
	bw.cmu.Unlock()
	wake(bw.notify)
	if tell && handle != 0 {
		why := &DeadError{Reason: mitogen.DeadReason_UNKNOWN}
		if d := (*DeadError)(nil); errors.As(err, &d) {
			why.Reason = d.Reason
		}
		why.Message = fmt.Sprintf("byte stream writer at context %d failed: %v", bw.r.id, err)
		why.Context = bw.r.id
		bw.r.SendDead(dst, handle, why)
	}
	return err
}

// waitCredit waits until at least need credit is held, and returns it.
func (bw *ByteWriter) waitCredit(need int64) (int64, error) {
	for {
		bw.cmu.Lock()
		avail, err := bw.avail, bw.err
		bw.cmu.Unlock()
		if err != nil {
			return 0, err
		}
		if err := bw.credit.failed(); err != nil {
			return 0, bw.fail(fmt.Errorf("byte stream to context %d: %w", bw.dst, err), false)
		}
		if err := bw.ctx.Err(); err != nil {
			return 0, bw.fail(fmt.Errorf("byte stream to context %d: %w", bw.dst, err), true)
		}
		if avail >= need {
			return avail, nil
		}
		select {
		case <-bw.notify:
		case <-bw.ctx.Done():
		}
	}
}

// spend takes a chunk's cost from the credit held.
func (bw *ByteWriter) spend(n int) {
	bw.cmu.Lock()
	bw.avail -= int64(n) + ChunkOverhead
	bw.cmu.Unlock()
}

// threshold is the credit worth waiting for before reading a source: a
// full chunk, or half the window when that is smaller, and always enough
// for one byte.
func (bw *ByteWriter) threshold() int64 {
	return max(min(int64(bw.r.cfg.MaxChunk)+ChunkOverhead, bw.window/2), MinStreamWindow)
}

// chunkFor is the payload size of the next chunk given avail credit.
func (bw *ByteWriter) chunkFor(avail int64) int {
	return int(min(int64(bw.r.cfg.MaxChunk), avail-ChunkOverhead))
}

func (bw *ByteWriter) check() error {
	if bw.closed {
		return errors.New("byte stream: write after close")
	}
	bw.cmu.Lock()
	defer bw.cmu.Unlock()
	if bw.err != nil {
		return bw.err
	}
	if bw.handle == 0 {
		return errors.New("byte stream: write before Connect")
	}
	return nil
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
		avail, err := bw.waitCredit(min(int64(len(p))+ChunkOverhead, bw.threshold()))
		if err != nil {
			return written, err
		}
		n := min(len(p), bw.chunkFor(avail))
		data := make([]byte, n)
		copy(data, p[:n])
		bw.spend(n)
		bw.r.Send(&wire.Message{Dst: bw.dst, Handle: bw.handle, ReplyTo: bw.credit.handle, Data: data})
		written += n
		p = p[n:]
	}
	return written, nil
}

// ReadFrom implements io.ReaderFrom: it reads straight into the buffer of
// the frame that will carry the bytes, so they are never copied again
// (but for a short read, see below). An error reading src fails the stream
// (the reader sees it too).
//
// Frame buffers come from the router's frame pool and go back to it once
// written to the next stream, so a long stream allocates (almost) nothing:
// fresh buffers cost zeroing and page faults, which on a busy machine were
// most of a relay's CPU time and cut its throughput several times over.
func (bw *ByteWriter) ReadFrom(src io.Reader) (int64, error) {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	if err := bw.check(); err != nil {
		return 0, err
	}
	var total int64
	head, tail := wire.DataOffset, len(wire.Trailer)
	var buf []byte // a pooled buffer the next read goes into
	defer func() {
		if buf != nil {
			bw.r.frames.put(buf)
		}
	}()
	for {
		// Wait for credit before reading, so that a slow reader stops us
		// reading the source at all; then read no more than it covers.
		avail, err := bw.waitCredit(bw.threshold())
		if err != nil {
			return total, err
		}
		size := bw.chunkFor(avail)
		if cap(buf) < head+size+tail {
			if buf != nil {
				bw.r.frames.put(buf)
			}
			buf = bw.r.frames.get(head + size + tail)
		}
		buf = buf[:cap(buf)]
		n, err := src.Read(buf[head : head+size])
		if n < 0 || n > size {
			n, err = 0, fmt.Errorf("invalid count %d from Read", n) // a broken io.Reader
		}
		if n > 0 {
			frame := buf
			if c := class(head + n + tail); c >= 0 && c < class(cap(buf)) {
				// A short read (a pipe gives what it holds): its bytes move
				// to a buffer of their size, so that the frames in flight pin
				// memory near the window, and buf takes the next read.
				frame = bw.r.frames.get(head + n + tail)
				copy(frame[head:], buf[head:head+n])
			} else {
				buf = nil
			}
			frame = frame[:head+n+tail]
			m := &wire.Message{Dst: bw.dst, Src: bw.r.id, Auth: bw.r.id, Handle: bw.handle, ReplyTo: bw.credit.handle}
			m.Data = frame[head : head+n]
			wire.AppendHeader(frame[:0], m)
			copy(frame[head+n:], wire.Trailer)
			m.Frame = frame
			bw.spend(n)
			bw.r.sendPooled(m)
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, bw.fail(fmt.Errorf("byte stream to context %d: reading its source: %w", bw.dst, err), true)
		}
	}
}

// sendPooled sends m built here, whose Frame came from the frame pool: when
// m leaves through a stream, the frame goes back to the pool once written.
// Anything else (a reader in this context, no route) goes through route,
// which keeps the frame out of the pool.
func (r *Router) sendPooled(m *wire.Message) {
	r.mu.Lock()
	var out *Stream
	if m.Dst != r.id && !r.closed {
		out = r.streamForLocked(m.Dst)
	}
	r.mu.Unlock()
	if out == nil || out.enqueueFrame(true, true, m.Frame) != nil {
		// On failure the frame was neither queued nor recycled: route
		// bounces m as it would any message for a closed stream.
		r.route(m, nil)
	}
}

// Close ends the stream: the reader sees EOF after the bytes already sent.
// If the stream had failed, the reader already knows, and Close returns
// the error.
func (bw *ByteWriter) Close() error {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	if bw.closed {
		return nil
	}
	bw.closed = true
	bw.cmu.Lock()
	dst, handle, err := bw.dst, bw.handle, bw.err
	bw.cmu.Unlock()
	if handle != 0 && err == nil {
		bw.r.SendDead(dst, handle, &DeadError{Reason: mitogen.DeadReason_SENDER_CLOSED, Message: "end of stream"})
	}
	bw.credit.Close()
	return err
}
