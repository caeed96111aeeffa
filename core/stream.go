package core

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
)

// Stream is one byte-stream connection to a neighbouring context (the
// parent, or a child), with a reader and a writer goroutine. Its write queue
// is bounded by Config.StreamQueueBytes.
type Stream struct {
	r        *Router
	conn     io.ReadWriteCloser
	io       streamIO      // reads and writes conn
	br       *bufio.Reader // reads io
	remoteID int32
	name     string
	isParent bool
	leaf     bool // a child admitted with Leaf: nothing is routed through it

	mu      sync.Mutex
	cond    *sync.Cond // signalled when queue room appears or the stream closes
	queue   [][]byte
	recycle [][]byte // forwarded frames to give back to the pool once written
	queued  int
	// progress is when (UnixNano) the last write to conn began or ended;
	// watchdog cuts the stream when a write stays blocked for
	// Config.StreamStallTimeout after it (see watch).
	progress atomic.Int64
	watchdog *time.Timer
	armed    bool // watchdog is set to fire (under mu)
	// blockedFn is blocked, and piece the pieces of a write: state of the
	// one goroutine writing (s.writing).
	blockedFn func()
	piece     net.Buffers
	wake      chan struct{} // capacity 1: "queue not empty or closing"
	closed    bool
	writing   bool // a goroutine is writing to conn
	err       error
	done      chan struct{} // closed when both goroutines have ended
	readEnd   chan struct{}
}

// newStream makes a stream over conn. sio and br, when not nil, are how
// conn was read so far (newStreamIO(conn), and a reader over it).
func newStream(r *Router, conn io.ReadWriteCloser, sio streamIO, br *bufio.Reader, remoteID int32, name string, isParent bool) *Stream {
	if sio == nil {
		sio = newStreamIO(conn, r.cfg.ReadSpin)
	}
	if br == nil {
		br = bufio.NewReaderSize(sio, streamReadBuffer)
	}
	s := &Stream{r: r, conn: conn, io: sio, br: br, remoteID: remoteID, name: name, isParent: isParent,
		wake: make(chan struct{}, 1), done: make(chan struct{}), readEnd: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	s.blockedFn = s.blocked
	return s
}

// streamReadBuffer is the size of a stream's read buffer.
const streamReadBuffer = 256 << 10

// RemoteID is the ID of the context at the other end.
func (s *Stream) RemoteID() int32 { return s.remoteID }

// Name describes the stream for logs and errors.
func (s *Stream) Name() string { return s.name }

// IsParent reports whether the stream leads to this context's parent.
func (s *Stream) IsParent() bool { return s.isParent }

// Done is closed when the stream has ended.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Err is why the stream ended (nil before).
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Stream) start() {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.readLoop() }()
	go func() { defer wg.Done(); s.writeLoop() }()
	go func() {
		wg.Wait()
		close(s.done)
		s.r.streamEnded(s)
	}()
}

func (s *Stream) readLoop() {
	defer close(s.readEnd)
	for {
		m, err := wire.ReadFrameInto(s.br, s.r.cfg.MaxFrameSize, s.r.frames.get)
		if err != nil {
			s.mu.Lock()
			closedHere := s.closed
			s.mu.Unlock()
			if closedHere {
				return // closed by this side; the reason is already recorded
			}
			s.r.mu.Lock()
			routerClosing := s.r.closing
			s.r.mu.Unlock()
			if routerClosing || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) ||
				errors.Is(err, os.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
				s.close(fmt.Errorf("stream %s closed by peer", s.name))
			} else {
				s.r.log.Error("stream read failed; closing it", "stream", s.name, "err", err)
				s.close(fmt.Errorf("stream %s: %w", s.name, err))
			}
			return
		}
		s.r.route(&m, s)
	}
}

// enqueue adds one frame (as buffers to write in order) to the write queue,
// waiting for room while the queue is full. It fails once the stream closed.
//
// The wait is bounded: a peer that stops reading cannot stall its senders
// (and through them every stream they read from). A leaf child's stream
// is cut as soon as its queue overflows, since nothing routes through a
// leaf and everything sent to it is bounded by windows it granted; any
// other stream is cut when its writer has made no progress for
// Config.StreamStallTimeout while a sender waits (ErrStalled).
//
// When direct is set (a local sender, never a stream's reader) and nothing
// is queued or being written, the caller writes the frame itself: a round
// trip then costs no hand-off to the writer goroutine.
func (s *Stream) enqueue(direct bool, bufs ...[]byte) error {
	return s.push(direct, bufs, false, nil, false)
}

// enqueueFrame is enqueue; with recycle set, bufs belong to the router's
// frame pool and go back to it once written.
func (s *Stream) enqueueFrame(direct, recycle bool, bufs ...[]byte) error {
	return s.push(direct, bufs, recycle, nil, false)
}

// enqueueOut queues (or, when nothing is queued, writes at once) a frame
// this context encoded (see frameOut). A frame with borrowed pieces is
// copied before it is queued, so that the sender may reuse them once this
// returns.
func (s *Stream) enqueueOut(out *frameOut) error {
	return s.push(true, out.bufs, false, out.pooled, out.borrowed)
}

// push is enqueue: recycleAll gives every buffer of bufs back to the pool
// once written, pooled (when not nil) that one; borrowed bufs are copied
// before they are queued.
func (s *Stream) push(direct bool, bufs [][]byte, recycleAll bool, pooled []byte, borrowed bool) error {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	s.mu.Lock()
	for !s.closed && s.queued > 0 && s.queued+n > s.r.cfg.StreamQueueBytes {
		if s.leaf {
			cut := fmt.Errorf("stream %s: %w: leaf context's queue full (%d bytes queued)", s.name, ErrStalled, s.queued)
			s.mu.Unlock()
			s.r.log.Error("cutting a stream whose peer stopped reading", "stream", s.name, "err", cut)
			s.close(cut)
			return cut
		}
		// The writer is busy: either it makes progress and frees room,
		// or its watchdog cuts the stream (see watch), which wakes us.
		s.cond.Wait()
	}
	if s.closed {
		err := s.err
		s.mu.Unlock()
		return err
	}
	if direct && !s.writing && len(s.queue) == 0 {
		s.writing = true
		s.mu.Unlock()
		var done [][]byte
		if recycleAll {
			done = append(done, bufs...) // write reslices the pieces of bufs
		}
		err := s.write(bufs)
		if pooled != nil {
			s.r.frames.put(pooled)
		}
		s.mu.Lock()
		s.writing = false
		pending := len(s.queue) > 0
		s.cond.Broadcast()
		s.mu.Unlock()
		if err != nil {
			err = fmt.Errorf("stream %s: write: %w", s.name, err)
			s.close(err)
			return err
		}
		for _, b := range done {
			s.r.frames.put(b)
		}
		if pending {
			s.kick()
		}
		return nil
	}
	if borrowed {
		// Copied into a pool buffer, recycled once written like any
		// pooled frame.
		own := s.r.frames.get(n)[:0]
		for _, b := range bufs {
			own = append(own, b...)
		}
		bufs = [][]byte{own}
		if pooled != nil {
			s.r.frames.put(pooled)
		}
		pooled = own
	}
	s.queue = append(s.queue, bufs...)
	if recycleAll {
		s.recycle = append(s.recycle, bufs...)
	}
	if pooled != nil {
		s.recycle = append(s.recycle, pooled)
	}
	s.queued += n
	s.mu.Unlock()
	s.kick()
	return nil
}

// kick wakes the writer goroutine.
func (s *Stream) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// small buffers are coalesced into one write; larger ones go out as they are.
const coalesceLimit = 16 << 10

func (s *Stream) writeLoop() {
	var scratch []byte
	var batch net.Buffers
	for {
		s.mu.Lock()
		for (len(s.queue) == 0 || s.writing) && !s.closed {
			s.mu.Unlock()
			<-s.wake
			s.mu.Lock()
		}
		if s.closed {
			s.mu.Unlock()
			return
		}
		q := s.queue
		done := s.recycle
		s.queue = nil
		s.recycle = nil
		s.queued = 0
		s.writing = true
		s.cond.Broadcast()
		s.mu.Unlock()

		batch = batch[:0]
		scratch = scratch[:0]
		for _, b := range q {
			if len(b) < coalesceLimit {
				if len(batch) == 0 || !sameTail(batch[len(batch)-1], scratch) {
					start := len(scratch)
					scratch = append(scratch, b...)
					batch = append(batch, scratch[start:len(scratch):len(scratch)])
				} else {
					start := len(scratch) - len(batch[len(batch)-1])
					scratch = append(scratch, b...)
					batch[len(batch)-1] = scratch[start:len(scratch):len(scratch)]
				}
				continue
			}
			batch = append(batch, b)
		}
		// Earlier pieces keep pointing at the array they were copied into
		// even when scratch grows, so the batch stays valid.
		err := s.write(batch)
		s.mu.Lock()
		s.writing = false
		s.cond.Broadcast()
		s.mu.Unlock()
		if err != nil {
			s.close(fmt.Errorf("stream %s: write: %w", s.name, err))
			return
		}
		for _, b := range done {
			s.r.frames.put(b)
		}
		if cap(scratch) > 4<<20 {
			scratch = nil
		}
	}
}

// writePiece bounds one write call, so that a slow but live peer shows
// progress at least once per piece.
const writePiece = 256 << 10

// write writes bufs to conn in pieces of at most writePiece bytes, noting
// progress after each, under the stream's watchdog: a piece still blocked
// StreamStallTimeout after the last progress cuts the stream (ErrStalled),
// which unblocks the write. Only one write runs at a time (s.writing). The
// watchdog is armed when a piece has to wait for the peer (see
// streamIO.writev), so a write the peer's buffer takes at once costs no
// timer.
func (s *Stream) write(bufs net.Buffers) error {
	s.progress.Store(time.Now().UnixNano())
	piece := s.piece[:0]
	defer func() { s.piece = piece[:0] }()
	for len(bufs) > 0 {
		piece = piece[:0]
		size := 0
		for len(bufs) > 0 && size < writePiece {
			b := bufs[0]
			if take := writePiece - size; len(b) > take {
				piece = append(piece, b[:take])
				bufs[0] = b[take:]
				size += take
				break
			}
			piece = append(piece, b)
			size += len(b)
			bufs = bufs[1:]
		}
		rest := piece
		err := s.io.writev(&rest, s.blockedFn)
		clear(piece) // drop the references to the buffers
		if err != nil {
			if stall := s.Err(); errors.Is(stall, ErrStalled) {
				return stall
			}
			return err
		}
		s.progress.Store(time.Now().UnixNano())
	}
	return nil
}

// blocked is called when a write has to wait for the peer: it arms the
// watchdog, unless it is armed already, to fire StreamStallTimeout after
// the last progress.
func (s *Stream) blocked() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.armed || s.closed {
		return
	}
	s.armed = true
	left := s.r.cfg.StreamStallTimeout - time.Since(time.Unix(0, s.progress.Load()))
	if s.watchdog == nil {
		s.watchdog = time.AfterFunc(left, s.watch)
	} else {
		s.watchdog.Reset(left)
	}
}

// watch is the watchdog's function: it cuts the stream if a write is in
// progress and has made none for StreamStallTimeout, else re-arms itself
// while a write runs.
func (s *Stream) watch() {
	s.mu.Lock()
	s.armed = false
	writing, closed := s.writing, s.closed
	s.mu.Unlock()
	if !writing || closed {
		return
	}
	idle := time.Since(time.Unix(0, s.progress.Load()))
	if left := s.r.cfg.StreamStallTimeout - idle; left > 0 {
		s.mu.Lock()
		if !s.armed && !s.closed {
			s.armed = true
			s.watchdog.Reset(left)
		}
		s.mu.Unlock()
		return
	}
	cut := fmt.Errorf("stream %s: %w: a write made no progress for %v", s.name, ErrStalled, idle.Round(time.Millisecond))
	s.r.log.Error("cutting a stream whose peer stopped reading", "stream", s.name, "err", cut)
	s.close(cut)
}

// sameTail reports whether b is the last piece of scratch (so that the next
// small buffer can be appended to the same write).
func sameTail(b, scratch []byte) bool {
	if len(b) == 0 || len(scratch) < len(b) {
		return false
	}
	return &b[len(b)-1] == &scratch[len(scratch)-1]
}

// close ends the stream; the first error wins.
func (s *Stream) close(err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.err = err
	s.cond.Broadcast()
	// A pending watchdog would keep the stream (and through it its router)
	// reachable for up to StreamStallTimeout after the end.
	if s.watchdog != nil {
		s.watchdog.Stop()
		s.armed = false
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	s.conn.Close()
}
