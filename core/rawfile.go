package core

import (
	"io"
	"net"
	"os"
)

// FileReader returns a reader of f for a relay's pump. When f is a
// non-blocking descriptor (a pipe made by os.Pipe), it reads with raw
// system calls and waits in the runtime's poller (see fdIO), which spares
// every read that finds the process idle a wake-up of the runtime's
// monitor thread; otherwise it is f itself. One goroutine reads it at a
// time; Close f to end a read in progress.
func FileReader(f *os.File) io.Reader {
	rc, err := f.SyscallConn()
	if err != nil || !nonBlocking(rc) {
		return f
	}
	x := &fdIO{r: rc}
	x.readFn = x.read
	return x
}

// FileWriter is FileReader for writing: one goroutine writes at a time.
func FileWriter(f *os.File) io.Writer {
	rc, err := f.SyscallConn()
	if err != nil || !nonBlocking(rc) {
		return f
	}
	x := &fdIO{w: rc}
	x.writeFn = x.write
	return &fileWriter{io: x}
}

type fileWriter struct {
	io   *fdIO
	bufs net.Buffers
}

func (w *fileWriter) Write(p []byte) (int, error) {
	w.bufs = append(w.bufs[:0], p)
	err := w.io.writev(&w.bufs, noWait)
	left := 0
	for _, b := range w.bufs {
		left += len(b)
	}
	w.bufs = w.bufs[:0]
	return len(p) - left, err
}

func noWait() {}
