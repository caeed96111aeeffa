package core

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"
	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

func socketConns(t *testing.T, sndbuf int) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out [2]net.Conn
	for i, fd := range fds {
		if sndbuf > 0 {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sndbuf)
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, sndbuf)
		}
		f := os.NewFile(uintptr(fd), "sp")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		out[i] = c
	}
	return out[0], out[1]
}

// Sockets and non-blocking pipes are read and written with raw system
// calls; anything else (an in-memory pipe) goes through Read and Write.
func TestStreamIOChoice(t *testing.T) {
	a, _ := socketConns(t, 0)
	if _, ok := newStreamIO(a, 0).(*fdIO); !ok {
		t.Errorf("socket: got %T, want *fdIO", newStreamIO(a, 0))
	}
	p, q := net.Pipe()
	defer p.Close()
	defer q.Close()
	if _, ok := newStreamIO(p, 0).(plainIO); !ok {
		t.Errorf("net.Pipe: got %T, want plainIO", newStreamIO(p, 0))
	}
	// A descriptor in blocking mode would stall a thread the runtime does
	// not know is blocked: it is not read raw.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "blocking")
	defer f.Close()
	defer unix.Close(fds[1])
	if err := unix.SetNonblock(fds[0], false); err != nil {
		t.Fatal(err)
	}
	if _, ok := newStreamIO(f, 0).(plainIO); !ok {
		t.Errorf("blocking descriptor: got %T, want plainIO", newStreamIO(f, 0))
	}
}

// Everything written with fdIO arrives in order, through partial writes
// against a small socket buffer and a reader that drains it slowly; EOF
// and errors after close are reported.
func TestFDIOPartialWritesAndEOF(t *testing.T) {
	a, b := socketConns(t, 8<<10)
	w := newStreamIO(a, 0)
	r := newStreamIO(b, 0)
	if _, ok := w.(*fdIO); !ok {
		t.Fatalf("got %T", w)
	}
	var want bytes.Buffer
	var bufs net.Buffers
	for i := range 300 {
		p := bytes.Repeat([]byte{byte(i)}, 1+i*37%5000)
		want.Write(p)
		bufs = append(bufs, p)
	}
	got := make(chan []byte, 1)
	go func() {
		var out bytes.Buffer
		buf := make([]byte, 1000)
		for {
			n, err := r.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				got <- out.Bytes()
				return
			}
			time.Sleep(time.Microsecond)
		}
	}()
	blocked := 0
	if err := w.writev(&bufs, func() { blocked++ }); err != nil {
		t.Fatalf("writev: %v", err)
	}
	if len(bufs) != 0 {
		t.Fatalf("writev left %d buffers", len(bufs))
	}
	if blocked == 0 {
		t.Errorf("a %d-byte write into an 8 KiB socket buffer never had to wait", want.Len())
	}
	a.Close()
	if g := <-got; !bytes.Equal(g, want.Bytes()) {
		t.Fatalf("read %d bytes, wrote %d (or different ones)", len(g), want.Len())
	}
	if _, err := r.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read after the peer closed: %v, want EOF", err)
	}
	more := net.Buffers{[]byte("x")}
	if err := w.writev(&more, func() {}); err == nil {
		t.Errorf("write after close succeeded")
	}
}

// A frame with borrowed pieces (a caller's binary field, not copied into
// the frame) that cannot be written at once is copied before it is
// queued: the caller may reuse its buffer as soon as the send returns,
// and the peer still gets the bytes as they were.
func TestBorrowedFrameIsCopiedWhenQueued(t *testing.T) {
	r := newRouter(mitogen.MASTER_ID, nil, DefaultConfig())
	defer r.Shutdown()
	a, b := socketConns(t, 0)
	s := newStream(r, a, nil, nil, 1, "test", false)
	// Another write is in progress: the frame has to be queued.
	s.mu.Lock()
	s.writing = true
	s.mu.Unlock()
	data := bytes.Repeat([]byte("a"), 3*nocopyMin)
	m := &wire.Message{Dst: 1, Src: 0, Auth: 0, Handle: 1000}
	out, _ := r.encodeOut(m, "x", 1, 7, &nocopyArgs{data})
	if !out.borrowed {
		t.Fatalf("a %d-byte binary field was copied into the frame", len(data))
	}
	if err := s.enqueueOut(&out); err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] = 'b' // the caller reuses its buffer
	}
	s.mu.Lock()
	s.writing = false
	s.mu.Unlock()
	s.start()
	defer s.close(nil)
	got, err := wire.ReadFrame(b, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, n, err := thrift.Binary.ReadMessageBegin(got.Data)
	if err != nil {
		t.Fatal(err)
	}
	var args mitogen.AgentEchoArgs
	if _, err := args.FastRead(got.Data[n:]); err != nil {
		t.Fatalf("decoding the sent args: %v", err)
	}
	if !bytes.Equal(args.Data, bytes.Repeat([]byte("a"), len(data))) {
		t.Fatalf("the queued frame carried the caller's later bytes")
	}
}

// nocopyArgs encodes like mitogen.AgentEchoArgs, leaving its binary field
// to the NocopyWriter as kitex-generated code does (thriftgo's fastgo
// code, which gen/ holds, copies every field).
type nocopyArgs struct{ data []byte }

func (a *nocopyArgs) BLength() int { return 3 + 4 + len(a.data) + 1 }
func (a *nocopyArgs) FastWriteNocopy(b []byte, w thrift.NocopyWriter) int {
	off := thrift.Binary.WriteFieldBegin(b, thrift.STRING, 1)
	off += thrift.Binary.WriteBinaryNocopy(b[off:], w, a.data)
	b[off] = byte(thrift.STOP)
	return off + 1
}
func (a *nocopyArgs) FastRead(b []byte) (int, error) {
	var in mitogen.AgentEchoArgs
	n, err := in.FastRead(b)
	a.data = in.Data
	return n, err
}

// A frame encoded with fields left out is, written out, the frame a plain
// encoding makes.
func TestEncodeOutMatchesEncode(t *testing.T) {
	r := newRouter(mitogen.MASTER_ID, nil, DefaultConfig())
	defer r.Shutdown()
	// The stand-in above, and the generated structs themselves (mitogen-gen
	// makes their FastWriteNocopy leave large binary fields out): a plain
	// field, an optional one, and one among other fields.
	bodies := map[string]func(data []byte) thrift.FastCodec{
		"nocopyArgs":      func(data []byte) thrift.FastCodec { return &nocopyArgs{data} },
		"AgentEchoArgs":   func(data []byte) thrift.FastCodec { return &mitogen.AgentEchoArgs{Data: data} },
		"AgentEchoResult": func(data []byte) thrift.FastCodec { return &mitogen.AgentEchoResult{Success: data} },
		"Envelope": func(data []byte) thrift.FastCodec {
			return &mitogen.Envelope{DstId: 3, SrcId: 1, Handle: 1000, ReplyTo: 1001, Data: data}
		},
	}
	for name, body := range bodies {
		for _, size := range []int{0, 10, nocopyMin - 1, nocopyMin, 5 * nocopyMin} {
			data := bytes.Repeat([]byte{7}, size)
			m := &wire.Message{Dst: 3, Src: 0, Auth: 0, Handle: 1000, ReplyTo: 1001}
			out, contiguous := r.encodeOut(m, "Agent:echo", thrift.CALL, 9, body(data))
			plain := make([]byte, thrift.Binary.MessageBeginLength("Agent:echo")+body(data).BLength())
			i := thrift.Binary.WriteMessageBegin(plain, "Agent:echo", thrift.CALL, 9)
			if k := body(data).FastWriteNocopy(plain[i:], nil); i+k != len(plain) {
				t.Fatalf("%s, %d bytes: FastWriteNocopy wrote %d of BLength's %d", name, size, k, len(plain)-i)
			}
			mm := *m
			mm.Data = plain
			if got := out.joined(); !bytes.Equal(got, wire.Encode(&mm)) {
				t.Errorf("%s, %d bytes: encodeOut's frame differs from Encode's", name, size)
			}
			if (size <= 10 && out.borrowed) || (size >= 2*nocopyMin && !out.borrowed) {
				t.Errorf("%s, %d bytes: borrowed %v", name, size, out.borrowed)
			}
			if !out.borrowed && !bytes.Equal(contiguous, plain) {
				t.Errorf("%s, %d bytes: data returned is not the message", name, size)
			}
			if out.pooled != nil {
				r.frames.put(out.pooled)
			}
		}
	}
}

// Reply frames go back to the pool once their result is decoded: results
// of calls made at the same time keep their own bytes.
func TestConcurrentCallResultsKeepTheirBytes(t *testing.T) {
	cfg := DefaultConfig()
	m := newRouter(mitogen.MASTER_ID, nil, cfg)
	defer m.Close()
	a, b := socketConns(t, 0)
	child := make(chan *Router, 1)
	go func() {
		r, err := Boot(b, cfg, func(r *Router) {
			r.Serve("Agent", func(ctx context.Context, method string, args []byte) (thrift.FastCodec, error) {
				var in mitogen.AgentEchoArgs
				if _, err := in.FastRead(args); err != nil {
					return nil, err
				}
				return &mitogen.AgentEchoResult{Success: in.Data}, nil
			})
		})
		if err != nil {
			t.Error(err)
		}
		child <- r
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, _, err := m.StartChild(ctx, a, 1, "echo")
	if err != nil {
		t.Fatal(err)
	}
	if r := <-child; r != nil {
		defer r.Close()
	}
	const goroutines, calls = 8, 20
	var results [goroutines][calls][]byte
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				size := []int{100, 5000, 70000, 300000}[(g+i)%4]
				var res mitogen.AgentEchoResult
				if err := c.CallFunction(ctx, "Agent:echo", &mitogen.AgentEchoArgs{Data: bytes.Repeat([]byte{byte(g*calls + i)}, size)}, &res); err != nil {
					t.Error(err)
					return
				}
				results[g][i] = res.Success
			}
		}()
	}
	wg.Wait()
	// Later calls reused the buffers earlier replies were read into.
	for g := range goroutines {
		for i := range calls {
			size := []int{100, 5000, 70000, 300000}[(g+i)%4]
			if want := bytes.Repeat([]byte{byte(g*calls + i)}, size); !bytes.Equal(results[g][i], want) {
				t.Fatalf("call %d/%d: result changed after the call returned", g, i)
			}
		}
	}
}

// A poll that finds data keeps polling on; polls that end with nothing
// (a peer that cannot answer while this thread holds the CPU) switch it
// off, after which only every spinProbeEvery-th short read polls, and a
// probe that finds data switches it back on. A long read never polls.
func TestReadPollScoring(t *testing.T) {
	a, b := socketConns(t, 0)
	f, ok := newStreamIO(a, time.Microsecond).(*fdIO)
	if !ok {
		t.Fatalf("socket: got %T, want *fdIO", newStreamIO(a, 0))
	}
	buf := make([]byte, 64<<10)
	send := func(n int) {
		t.Helper()
		if _, err := b.Write(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
		if k, err := f.Read(buf); err != nil || k != n {
			t.Fatalf("read %d, %v; want %d", k, err, n)
		}
	}
	// missed runs one poll to its end (nothing to read) and reports
	// whether it polled at all.
	missed := func() bool {
		polled := false
		for f.poll() {
			polled = true
		}
		return polled
	}

	send(10) // short
	if f.spinScore != spinScoreMax {
		t.Fatalf("score %d at start, want %d", f.spinScore, spinScoreMax)
	}
	if !missed() {
		t.Fatal("no poll after a short read")
	}
	if want := spinScoreMax - spinMissCost; f.spinScore != want {
		t.Fatalf("score %d after a miss, want %d", f.spinScore, want)
	}
	// A poll that finds data raises the score.
	send(10)
	f.spinUntil = time.Now().Add(time.Hour) // as if polling when the data came
	send(10)
	if want := spinScoreMax - spinMissCost + 1; f.spinScore != want {
		t.Fatalf("score %d after a hit, want %d", f.spinScore, want)
	}
	// Misses switch polling off.
	for i := 0; f.spinScore > 0; i++ {
		if i > spinScoreMax {
			t.Fatalf("score %d after %d misses", f.spinScore, i)
		}
		send(10)
		missed()
	}
	for i := 1; i < spinProbeEvery; i++ {
		send(10)
		if missed() {
			t.Fatalf("polled on short read %d with polling off", i)
		}
	}
	send(10)
	if !missed() {
		t.Fatalf("no probe on short read %d with polling off", spinProbeEvery)
	}
	// A long read never polls.
	send(spinShortRead)
	if f.poll() {
		t.Fatal("polled after a long read")
	}
	// A stream that never polls.
	g := newStreamIO(a, -1).(*fdIO)
	g.lastShort = true
	if g.poll() {
		t.Fatal("polled with a negative ReadSpin")
	}
}
