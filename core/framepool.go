package core

import (
	"math/bits"
	"sync"
)

// framePool recycles the buffers of frames a router forwards: a relay
// reads a frame into a buffer, writes it to the next stream, and hands the
// buffer back here, so steady relaying allocates (almost) nothing and the
// heap does not swell between collections. Frames delivered locally are
// never recycled: receivers keep slices of them.
type framePool struct {
	classes [poolClasses]sync.Pool
}

const (
	minPoolShift = 12 // 4 KiB
	poolClasses  = 10 // up to 2 MiB
)

// class returns the size class index for n, or -1 when n is too large.
func class(n int) int {
	if n <= 1<<minPoolShift {
		return 0
	}
	c := bits.Len(uint(n-1)) - minPoolShift
	if c >= poolClasses {
		return -1
	}
	return c
}

// get returns a buffer of length n.
func (p *framePool) get(n int) []byte {
	c := class(n)
	if c < 0 {
		return make([]byte, n)
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<(c+minPoolShift))
}

// put returns a buffer that get made.
func (p *framePool) put(b []byte) {
	c := class(cap(b))
	if c < 0 || cap(b) != 1<<(c+minPoolShift) {
		return
	}
	b = b[:0]
	p.classes[c].Put(&b)
}
