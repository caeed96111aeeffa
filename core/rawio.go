package core

import (
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SyscallConns is implemented by a stream made of file descriptors whose
// read and write sides may differ (a pair of pipes), which are read and
// written as they are. A Stream over such a conn, or over a socket or an
// *os.File, whose descriptors are non-blocking, reads and writes the
// descriptors itself; see fdIO.
type SyscallConns interface {
	SyscallConns() (read, write syscall.RawConn, err error)
}

// streamIO is how a Stream reads and writes its connection.
type streamIO interface {
	io.Reader
	// writev writes every byte of bufs (consuming bufs) or fails. When it
	// has to wait for the peer to read (the descriptor is full), it calls
	// blocked first; an implementation that cannot tell calls it before
	// it starts.
	writev(bufs *net.Buffers, blocked func()) error
}

// plainIO is streamIO over any io.ReadWriter.
type plainIO struct{ rw io.ReadWriter }

func (p plainIO) Read(b []byte) (int, error) { return p.rw.Read(b) }
func (p plainIO) writev(bufs *net.Buffers, blocked func()) error {
	blocked()
	_, err := bufs.WriteTo(p.rw)
	return err
}

// fdIO reads and writes non-blocking descriptors with raw system calls
// and waits for readiness through the runtime's poller (syscall.RawConn).
//
// A read or write of a non-blocking descriptor never blocks, so it does
// not need the runtime's blocking-syscall bookkeeping, which on every
// call that finds the runtime idle wakes its monitor thread (a futex wake
// and a run of short sleeps): two extra thread wake-ups per round trip in
// each process, which on a busy machine cost more than the message itself.
//
// A read that finds nothing right after a short read (a small message: a
// call, a reply, an acknowledgement) polls again for up to spin before it
// waits through the poller: in a request/response exchange the answer
// usually comes within that, and waiting for it awake saves putting the
// thread to sleep and waking it (and, on an idle CPU, the CPU itself),
// which costs more than the exchange. The goroutine yields between polls,
// so nothing else waits for it. After a long read (bulk data, which comes
// as fast as the peer can write it) it waits at once. See Config.ReadSpin.
//
// One goroutine reads and one writes at a time (the stream's reader, and
// whoever holds Stream.writing), so each side keeps its state here.
type fdIO struct {
	r, w syscall.RawConn

	rbuf      []byte
	rn        int
	rerr      error
	readFn    func(fd uintptr) bool
	spin      time.Duration // 0: never
	lastShort bool          // the last read returned less than spinShortRead
	spinUntil time.Time     // zero: not spinning
	spinScore int           // see poll; polling is off at 0
	spinProbe int           // short reads since polling went off

	wbufs   *net.Buffers
	werr    error
	blocked func()
	iovs    []unix.Iovec
	writeFn func(fd uintptr) bool
}

// newStreamIO returns the fastest streamIO conn allows. Only descriptors
// known to be read and written as they are qualify (a socket, an *os.File,
// a SyscallConns): a wrapper that merely embeds one may add to its reads
// (bytes it read ahead, say), which raw reads would skip.
func newStreamIO(conn io.ReadWriter, spin time.Duration) streamIO {
	var rc, wc syscall.RawConn
	var err error
	switch c := conn.(type) {
	case SyscallConns:
		rc, wc, err = c.SyscallConns()
	case *net.UnixConn:
		rc, err = c.SyscallConn()
		wc = rc
	case *net.TCPConn:
		rc, err = c.SyscallConn()
		wc = rc
	case *os.File:
		rc, err = c.SyscallConn()
		wc = rc
	default:
		return plainIO{conn}
	}
	if err != nil || rc == nil || wc == nil || !nonBlocking(rc) || !nonBlocking(wc) {
		return plainIO{conn}
	}
	f := &fdIO{r: rc, w: wc, spin: max(spin, 0), spinScore: spinScoreMax}
	f.readFn = f.read
	f.writeFn = f.write
	return f
}

// nonBlocking reports whether rc's descriptor is in non-blocking mode (a
// raw read of a blocking one would stall its thread unknown to the
// runtime).
func nonBlocking(rc syscall.RawConn) bool {
	ok := false
	err := rc.Control(func(fd uintptr) {
		fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		ok = err == nil && fl&unix.O_NONBLOCK != 0
	})
	return err == nil && ok
}

func (f *fdIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	f.rbuf, f.rn, f.rerr = p, 0, nil
	err := f.r.Read(f.readFn)
	n, rerr := f.rn, f.rerr
	f.rbuf, f.rerr = nil, nil
	if err != nil {
		return n, err
	}
	return n, rerr
}

// read is the RawConn.Read function: false means "wait until readable".
func (f *fdIO) read(fd uintptr) bool {
	p := f.rbuf
	for {
		k, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			f.rn = int(k)
			if k == 0 {
				f.rerr = io.EOF
			}
			if !f.spinUntil.IsZero() {
				f.spinScore, f.spinUntil = min(f.spinScore+1, spinScoreMax), time.Time{} // the poll paid
			}
			f.lastShort = k < spinShortRead
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if f.poll() {
				continue
			}
			return false
		default:
			f.rerr = e
			return true
		}
	}
}

// poll reports whether a read that found nothing should try again at once
// (after yielding to the process's other goroutines), polling for up to
// f.spin after a short read.
//
// Polling pays only when the peer runs meanwhile on another CPU. When it
// shares this thread's CPU it cannot run until the poll ends, so every
// poll ends with nothing and each exchange costs a whole poll on each side.
// So polls are scored: one that finds data raises the score by one (up to
// spinScoreMax), one that ends with nothing lowers it by spinMissCost, and
// at zero polling stops; then every spinProbeEvery-th short read polls
// again, to find out whether polling pays once more. A peer that misses a
// poll now and then keeps it on; one that always misses costs one poll in
// spinProbeEvery exchanges.
func (f *fdIO) poll() bool {
	if f.spin <= 0 || !f.lastShort {
		return false
	}
	now := time.Now()
	if f.spinUntil.IsZero() {
		if f.spinScore == 0 {
			if f.spinProbe++; f.spinProbe < spinProbeEvery {
				f.lastShort = false
				return false
			}
			f.spinProbe = 0
		}
		f.spinUntil = now.Add(f.spin)
	}
	if now.Before(f.spinUntil) {
		runtime.Gosched()
		return true
	}
	f.lastShort, f.spinUntil = false, time.Time{}
	f.spinScore = max(f.spinScore-spinMissCost, 0)
	return false
}

// The scoring of polls (see fdIO.poll).
const (
	spinScoreMax   = 8
	spinMissCost   = 2
	spinProbeEvery = 16
)

// spinShortRead is the size below which a read counts as short: it ended a
// small message, after which fdIO polls for the answer (see fdIO).
const spinShortRead = 16 << 10

// maxIov bounds the buffers given to one writev (Linux's IOV_MAX is 1024).
const maxIov = 1024

func (f *fdIO) writev(bufs *net.Buffers, blocked func()) error {
	f.wbufs, f.werr, f.blocked = bufs, nil, blocked
	err := f.w.Write(f.writeFn)
	werr := f.werr
	f.wbufs, f.werr, f.blocked = nil, nil, nil
	if err != nil {
		return err
	}
	return werr
}

// write is the RawConn.Write function: false means "wait until writable".
func (f *fdIO) write(fd uintptr) bool {
	bufs := f.wbufs
	for len(*bufs) > 0 {
		iovs := f.iovs[:0]
		for _, b := range *bufs {
			if len(iovs) == maxIov {
				break
			}
			if len(b) == 0 {
				continue
			}
			iovs = append(iovs, unix.Iovec{Base: &b[0]})
			iovs[len(iovs)-1].SetLen(len(b))
		}
		f.iovs = iovs
		if len(iovs) == 0 {
			*bufs = (*bufs)[:0]
			return true
		}
		k, _, e := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iovs[0])), uintptr(len(iovs)))
		clear(iovs) // drop the references to the buffers
		switch e {
		case 0:
			consume(bufs, int64(k))
		case unix.EINTR:
		case unix.EAGAIN:
			f.blocked()
			return false
		default:
			f.werr = e
			return true
		}
	}
	return true
}

// consume drops the first n bytes of bufs.
func consume(bufs *net.Buffers, n int64) {
	for len(*bufs) > 0 {
		l := int64(len((*bufs)[0]))
		if l > n {
			(*bufs)[0] = (*bufs)[0][n:]
			return
		}
		n -= l
		*bufs = (*bufs)[1:]
	}
}
