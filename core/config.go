// Package core is mitogen-go's message layer: a Router per context that
// moves Envelopes between streams by destination, enforces the authority
// rules of idl/mitogen.thrift, delivers messages to handles, makes and serves
// CALL_FUNCTION calls, and carries flow-controlled byte streams.
//
// Every queue in this package has a bound, and every wait ends with its
// context.Context, the death of the peer it waits on, or the router's
// shutdown.
package core

import (
	"log/slog"

	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// Config holds a router's limits. Zero fields take DefaultConfig's values.
type Config struct {
	// MaxFrameSize is the largest frame accepted from a peer (length prefix
	// excluded). Larger frames end the stream.
	MaxFrameSize int
	// StreamQueueBytes bounds the bytes queued for writing on one stream.
	// A router forwarding into a full queue stops reading the stream the
	// message came from: backpressure reaches the sender.
	StreamQueueBytes int
	// ReceiverQueueLen and ReceiverQueueBytes bound a Receiver's queue. A
	// message arriving at a full receiver is dropped and its sender told
	// with Dead{OVERFLOW}. Byte streams do not use these queues: their
	// bound is the window, and they never drop.
	ReceiverQueueLen   int
	ReceiverQueueBytes int
	// MaxConcurrentCalls bounds CALL_FUNCTION requests served at once; more
	// are refused with Dead{OVERFLOW}.
	MaxConcurrentCalls int
	// StreamWindow is the credit a ByteReader grants: the most bytes (plus
	// ChunkOverhead per chunk) of one byte stream in flight at a time.
	// Values below MinStreamWindow are raised to it.
	StreamWindow int64
	// MaxChunk is the largest payload a ByteWriter puts in one message.
	MaxChunk int
	// Logger receives the router's logs; nil means slog.Default().
	Logger *slog.Logger
}

// ChunkOverhead is charged against a byte stream's credit for each chunk on
// top of its length (idl: CHUNK_OVERHEAD), so that a window bounds the
// number of chunks in flight as well as their bytes.
const ChunkOverhead = mitogen.CHUNK_OVERHEAD

// MinStreamWindow is the smallest window a byte stream may have (idl:
// MIN_STREAM_WINDOW): one chunk of one byte.
const MinStreamWindow = mitogen.MIN_STREAM_WINDOW

// DefaultConfig returns the defaults: 128 MiB frames, 16 MiB per stream
// queue, 4096 messages or 32 MiB per receiver, 256 concurrent calls, a
// 4 MiB byte-stream window in chunks of up to 512 KiB.
func DefaultConfig() Config {
	return Config{
		MaxFrameSize:       mitogen.MAX_FRAME_SIZE,
		StreamQueueBytes:   16 << 20,
		ReceiverQueueLen:   4096,
		ReceiverQueueBytes: 32 << 20,
		MaxConcurrentCalls: 256,
		StreamWindow:       4 << 20,
		MaxChunk:           512 << 10,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxFrameSize <= 0 {
		c.MaxFrameSize = d.MaxFrameSize
	}
	if c.StreamQueueBytes <= 0 {
		c.StreamQueueBytes = d.StreamQueueBytes
	}
	if c.ReceiverQueueLen <= 0 {
		c.ReceiverQueueLen = d.ReceiverQueueLen
	}
	if c.ReceiverQueueBytes <= 0 {
		c.ReceiverQueueBytes = d.ReceiverQueueBytes
	}
	if c.MaxConcurrentCalls <= 0 {
		c.MaxConcurrentCalls = d.MaxConcurrentCalls
	}
	if c.StreamWindow <= 0 {
		c.StreamWindow = d.StreamWindow
	}
	c.StreamWindow = max(c.StreamWindow, MinStreamWindow)
	if c.MaxChunk <= 0 {
		c.MaxChunk = d.MaxChunk
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
