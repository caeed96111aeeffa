package core

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// Config holds a router's limits and timings: every tunable of package core
// is here, with its default in DefaultConfig.
//
// A zero field means "the default" (so Config{} is DefaultConfig() and a
// caller sets only what it changes). Any other value must make sense, or
// Validate, NewMasterChecked and Boot refuse the Config with an error
// naming the field: negative sizes, counts or durations, a MaxFrameSize
// above the protocol's MAX_FRAME_SIZE or too small to carry one MaxChunk
// chunk, a StreamWindow below MinStreamWindow. Nothing is silently
// patched, except that NewMaster (which cannot fail) keeps its older
// behaviour of raising a StreamWindow below MinStreamWindow to it.
type Config struct {
	// MaxFrameSize is the largest frame accepted from a peer (length prefix
	// excluded). Larger frames end the stream. Between MinFrameSize and
	// MAX_FRAME_SIZE; it must also hold one chunk of MaxChunk bytes.
	MaxFrameSize int
	// StreamQueueBytes bounds the bytes queued for writing on one stream.
	// A router forwarding into a full queue stops reading the stream the
	// message came from: backpressure reaches the sender, for at most
	// StreamStallTimeout. A leaf child (fakessh's) whose queue is full is
	// cut at once instead.
	StreamQueueBytes int
	// StreamStallTimeout is how long a stream's peer may read nothing
	// while a sender waits for room in its full queue: after it the stream
	// is cut (ErrStalled), its context reported disconnected, and the
	// senders go on. A peer that stops reading thus delays the traffic
	// behind it by at most this, never forever.
	StreamStallTimeout time.Duration
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
	// ChunkOverhead per chunk) of one byte stream in flight at a time. At
	// least MinStreamWindow.
	StreamWindow int64
	// MaxChunk is the largest payload a ByteWriter puts in one message.
	MaxChunk int
	// ShutdownGrace is how long a router shutting down waits for its
	// children to finish their own shutdown (after SHUTDOWN) before it
	// cuts their streams. It applies to this router only: agents use the
	// default. The process relay's own ending steps are sized to fit in
	// the default, ChildShutdownGrace.
	ShutdownGrace time.Duration
	// ReadSpin is how long a stream's reader keeps polling its descriptor
	// after a short read (a small message) found nothing more, before it
	// sleeps until the descriptor is readable: a reply that comes within
	// it is taken without a sleep and a wake-up, which on an idle or a
	// virtual CPU cost more than the exchange itself. The reader yields
	// between polls, so it delays no other goroutine; it costs up to
	// ReadSpin of CPU after the last of a burst of small messages (and a
	// peer sending small messages less than ReadSpin apart keeps it
	// polling, as it would otherwise keep it waking). Zero means
	// DefaultReadSpin; a negative value never polls; at most MaxReadSpin
	// (a poll delays closing the stream by up to ReadSpin).
	ReadSpin time.Duration
	// Logger receives the router's logs; nil means slog.Default().
	Logger *slog.Logger
}

// MinFrameSize is the smallest MaxFrameSize a Config may set: room for an
// envelope's header and a small payload (a Boot, a Ready, a short call).
const MinFrameSize = 4 << 10

// ChunkOverhead is charged against a byte stream's credit for each chunk on
// top of its length (idl: CHUNK_OVERHEAD), so that a window bounds the
// number of chunks in flight as well as their bytes.
const ChunkOverhead = mitogen.CHUNK_OVERHEAD

// MinStreamWindow is the smallest window a byte stream may have (idl:
// MIN_STREAM_WINDOW): one chunk of one byte.
const MinStreamWindow = mitogen.MIN_STREAM_WINDOW

// DefaultReadSpin is Config.ReadSpin's default. Measured with
// mitogen-bench (no-op call round trip through a local context, 2-CPU VM,
// medians of 5): 25-35 µs without polling, quiet or with two busy loops
// beside it, 11 µs with 50 µs of polling in both; 1 MiB echo and a byte
// stream through cat unchanged (their reads are long, so they do not poll).
const DefaultReadSpin = 50 * time.Microsecond

// MaxReadSpin is the longest Config.ReadSpin.
const MaxReadSpin = time.Millisecond

// DefaultConfig returns the defaults: 128 MiB frames (MAX_FRAME_SIZE), 16
// MiB per stream queue cut after 30 s without progress, 4096 messages or 32 MiB per receiver, 256
// concurrent calls, a 4 MiB byte-stream window in chunks of up to 512 KiB,
// ChildShutdownGrace for children to shut down, and DefaultReadSpin.
func DefaultConfig() Config {
	return Config{
		MaxFrameSize:       mitogen.MAX_FRAME_SIZE,
		StreamQueueBytes:   16 << 20,
		StreamStallTimeout: 30 * time.Second,
		ReceiverQueueLen:   4096,
		ReceiverQueueBytes: 32 << 20,
		MaxConcurrentCalls: 256,
		StreamWindow:       4 << 20,
		MaxChunk:           512 << 10,
		ShutdownGrace:      ChildShutdownGrace,
		ReadSpin:           DefaultReadSpin,
	}
}

// Validate reports the first field of c that makes no sense, zero fields
// standing for their defaults (see Config).
func (c Config) Validate() error {
	d := c.withDefaults()
	bad := func(field string, v any, why string) error {
		return fmt.Errorf("core.Config.%s = %v: %s", field, v, why)
	}
	switch {
	case c.MaxFrameSize < 0:
		return bad("MaxFrameSize", c.MaxFrameSize, "negative")
	case c.StreamQueueBytes < 0:
		return bad("StreamQueueBytes", c.StreamQueueBytes, "negative")
	case c.ReceiverQueueLen < 0:
		return bad("ReceiverQueueLen", c.ReceiverQueueLen, "negative")
	case c.ReceiverQueueBytes < 0:
		return bad("ReceiverQueueBytes", c.ReceiverQueueBytes, "negative")
	case c.MaxConcurrentCalls < 0:
		return bad("MaxConcurrentCalls", c.MaxConcurrentCalls, "negative")
	case c.StreamWindow < 0:
		return bad("StreamWindow", c.StreamWindow, "negative")
	case c.MaxChunk < 0:
		return bad("MaxChunk", c.MaxChunk, "negative")
	case c.StreamStallTimeout < 0:
		return bad("StreamStallTimeout", c.StreamStallTimeout, "negative")
	case c.ShutdownGrace < 0:
		return bad("ShutdownGrace", c.ShutdownGrace, "negative")
	case c.ReadSpin > MaxReadSpin:
		return bad("ReadSpin", c.ReadSpin, fmt.Sprintf("above MaxReadSpin (%v)", MaxReadSpin))
	case d.MaxFrameSize > mitogen.MAX_FRAME_SIZE:
		return bad("MaxFrameSize", d.MaxFrameSize, fmt.Sprintf("above the protocol's MAX_FRAME_SIZE (%d)", mitogen.MAX_FRAME_SIZE))
	case d.MaxFrameSize < MinFrameSize:
		return bad("MaxFrameSize", d.MaxFrameSize, fmt.Sprintf("below MinFrameSize (%d)", MinFrameSize))
	case d.MaxChunk > d.MaxFrameSize-MinFrameSize:
		return bad("MaxChunk", d.MaxChunk, fmt.Sprintf("a chunk and its envelope do not fit in MaxFrameSize (%d)", d.MaxFrameSize))
	case d.StreamWindow < MinStreamWindow:
		return bad("StreamWindow", d.StreamWindow, fmt.Sprintf("below MinStreamWindow (%d)", MinStreamWindow))
	case d.ReceiverQueueBytes < MinFrameSize:
		return bad("ReceiverQueueBytes", d.ReceiverQueueBytes, fmt.Sprintf("below MinFrameSize (%d): a receiver could not hold a reply", MinFrameSize))
	case d.StreamQueueBytes < MinFrameSize:
		return bad("StreamQueueBytes", d.StreamQueueBytes, fmt.Sprintf("below MinFrameSize (%d)", MinFrameSize))
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxFrameSize <= 0 {
		c.MaxFrameSize = d.MaxFrameSize
	}
	if c.StreamQueueBytes <= 0 {
		c.StreamQueueBytes = d.StreamQueueBytes
	}
	if c.StreamStallTimeout <= 0 {
		c.StreamStallTimeout = d.StreamStallTimeout
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
	if c.MaxChunk <= 0 {
		c.MaxChunk = d.MaxChunk
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = d.ShutdownGrace
	}
	if c.ReadSpin == 0 {
		c.ReadSpin = d.ReadSpin
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
