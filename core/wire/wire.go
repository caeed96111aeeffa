// Package wire reads and writes mitogen-go frames: a 4-byte big-endian
// length followed by one Envelope (idl/mitogen.thrift) in Thrift's binary
// protocol, which is Apache Thrift's TFramedTransport framing.
//
// Decoding is zero-copy: a decoded Message's Data aliases the frame buffer,
// and a received frame can be forwarded to the next hop as it is, so payload
// bytes are copied once per hop (by the read system call) and never again in
// user space. The frame size is checked before anything is allocated.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// LengthSize is the size of the frame length prefix.
const LengthSize = 4

// HeaderSize is the encoded size of an Envelope without its data bytes, as
// Encode writes it: five i32 fields, the binary field's header and length,
// and the stop byte.
const HeaderSize = 5*(3+4) + 3 + 4 + 1

// DataOffset is where an encoded frame's data bytes start: the length
// prefix and HeaderSize without the trailing stop byte.
const DataOffset = LengthSize + HeaderSize - 1

// Field IDs of mitogen.Envelope.
const (
	fieldDst     = 1
	fieldSrc     = 2
	fieldAuth    = 3
	fieldHandle  = 4
	fieldReplyTo = 5
	fieldData    = 6
)

// Message is a decoded Envelope. Data may alias a frame buffer: a receiver
// that keeps it past the handler must not modify it.
type Message struct {
	Dst     int32
	Src     int32
	Auth    int32
	Handle  int32
	ReplyTo int32
	Data    []byte

	// Frame is the complete received frame (length prefix included) when the
	// message came off a stream unchanged; routers forward it as it is.
	Frame []byte
}

// IsDead reports whether m is a dead message.
func (m *Message) IsDead() bool { return m.ReplyTo == mitogen.IS_DEAD }

// String describes the message's header for logs.
func (m *Message) String() string {
	h := mitogen.HandleName(m.Handle)
	if h == "" {
		h = fmt.Sprint(m.Handle)
	}
	return fmt.Sprintf("Message(dst=%d src=%d auth=%d handle=%s reply_to=%d len=%d)",
		m.Dst, m.Src, m.Auth, h, m.ReplyTo, len(m.Data))
}

// ErrFrameTooLarge is wrapped by errors for frames above the size limit.
var ErrFrameTooLarge = errors.New("frame exceeds maximum size")

// ErrMalformed is wrapped by errors for frames that do not decode.
var ErrMalformed = errors.New("malformed frame")

// AppendHeader appends the length prefix and the envelope encoding of m up to
// (and including) the data field's length, so that m.Data followed by a stop
// byte completes the frame. Use with Trailer.
func AppendHeader(b []byte, m *Message) []byte {
	p := thrift.Binary
	n := HeaderSize + len(m.Data)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = p.AppendFieldBegin(b, thrift.I32, fieldDst)
	b = p.AppendI32(b, m.Dst)
	b = p.AppendFieldBegin(b, thrift.I32, fieldSrc)
	b = p.AppendI32(b, m.Src)
	b = p.AppendFieldBegin(b, thrift.I32, fieldAuth)
	b = p.AppendI32(b, m.Auth)
	b = p.AppendFieldBegin(b, thrift.I32, fieldHandle)
	b = p.AppendI32(b, m.Handle)
	b = p.AppendFieldBegin(b, thrift.I32, fieldReplyTo)
	b = p.AppendI32(b, m.ReplyTo)
	b = p.AppendFieldBegin(b, thrift.STRING, fieldData)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Data)))
	return b
}

// PutHeader writes into b[:DataOffset] the length prefix and the envelope
// encoding of m for a data field of dataLen bytes (m.Data is not looked
// at), as AppendHeader does: the data bytes at b[DataOffset:] followed by
// a stop byte complete the frame. It returns DataOffset.
func PutHeader(b []byte, m *Message, dataLen int) int {
	_ = b[DataOffset-1]
	p := thrift.Binary
	binary.BigEndian.PutUint32(b, uint32(HeaderSize+dataLen))
	i := LengthSize
	i += p.WriteFieldBegin(b[i:], thrift.I32, fieldDst)
	i += p.WriteI32(b[i:], m.Dst)
	i += p.WriteFieldBegin(b[i:], thrift.I32, fieldSrc)
	i += p.WriteI32(b[i:], m.Src)
	i += p.WriteFieldBegin(b[i:], thrift.I32, fieldAuth)
	i += p.WriteI32(b[i:], m.Auth)
	i += p.WriteFieldBegin(b[i:], thrift.I32, fieldHandle)
	i += p.WriteI32(b[i:], m.Handle)
	i += p.WriteFieldBegin(b[i:], thrift.I32, fieldReplyTo)
	i += p.WriteI32(b[i:], m.ReplyTo)
	i += p.WriteFieldBegin(b[i:], thrift.STRING, fieldData)
	binary.BigEndian.PutUint32(b[i:], uint32(dataLen))
	return i + 4
}

// Trailer is what follows the data bytes of an encoded envelope: the stop byte.
var Trailer = []byte{byte(thrift.STOP)}

// Encode returns the complete frame of m in one new buffer.
func Encode(m *Message) []byte {
	b := make([]byte, 0, LengthSize+HeaderSize+len(m.Data))
	b = AppendHeader(b, m)
	b = append(b, m.Data...)
	return append(b, Trailer...)
}

// Decode decodes the envelope in body (a frame without its length prefix).
// Data aliases body. Unknown fields are skipped, so a newer peer's extra
// fields do not break an older one.
func Decode(body []byte) (Message, error) {
	var m Message
	p := thrift.Binary
	off := 0
	for {
		t, id, n, err := p.ReadFieldBegin(body[off:])
		if err != nil {
			return m, fmt.Errorf("%w: envelope field header at offset %d: %v", ErrMalformed, off, err)
		}
		off += n
		if t == thrift.STOP {
			break
		}
		switch {
		case t == thrift.I32 && id >= fieldDst && id <= fieldReplyTo:
			v, n, err := p.ReadI32(body[off:])
			if err != nil {
				return m, fmt.Errorf("%w: envelope field %d: %v", ErrMalformed, id, err)
			}
			off += n
			switch id {
			case fieldDst:
				m.Dst = v
			case fieldSrc:
				m.Src = v
			case fieldAuth:
				m.Auth = v
			case fieldHandle:
				m.Handle = v
			case fieldReplyTo:
				m.ReplyTo = v
			}
		case t == thrift.STRING && id == fieldData:
			if len(body)-off < 4 {
				return m, fmt.Errorf("%w: envelope data length truncated", ErrMalformed)
			}
			l := binary.BigEndian.Uint32(body[off:])
			off += 4
			if uint64(l) > uint64(len(body)-off) {
				return m, fmt.Errorf("%w: envelope data length %d exceeds frame", ErrMalformed, l)
			}
			m.Data = body[off : off+int(l) : off+int(l)]
			off += int(l)
		default:
			n, err := p.Skip(body[off:], t)
			if err != nil {
				return m, fmt.Errorf("%w: skipping envelope field %d: %v", ErrMalformed, id, err)
			}
			off += n
		}
	}
	if off != len(body) {
		return m, fmt.Errorf("%w: %d trailing bytes after envelope", ErrMalformed, len(body)-off)
	}
	return m, nil
}

// ReadFrame reads one frame from r. It checks the length against max before
// allocating, and returns the decoded message with Frame set to the whole
// frame. io.EOF is returned only for a clean end between frames.
func ReadFrame(r io.Reader, max int) (Message, error) {
	return ReadFrameInto(r, max, func(n int) []byte { return make([]byte, n) })
}

// ReadFrameInto is ReadFrame with the frame's buffer (of length n, the
// whole frame) taken from alloc, once its size has passed the check.
func ReadFrameInto(r io.Reader, max int, alloc func(n int) []byte) (Message, error) {
	var hdr [LengthSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Message{}, fmt.Errorf("%w: truncated length prefix", ErrMalformed)
		}
		return Message{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(max) {
		return Message{}, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	if n < 1 {
		return Message{}, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	var frame []byte
	if n <= eagerFrame {
		frame = alloc(LengthSize + int(n))
		copy(frame, hdr[:])
		if _, err := io.ReadFull(r, frame[LengthSize:]); err != nil {
			return Message{}, frameReadError(err, n)
		}
	} else {
		var err error
		if frame, err = readGrowing(r, hdr, int(n)); err != nil {
			return Message{}, frameReadError(err, n)
		}
	}
	m, err := Decode(frame[LengthSize:])
	if err != nil {
		return Message{}, err
	}
	m.Frame = frame
	return m, nil
}

// eagerFrame is the largest frame whose buffer is allocated (from alloc) as
// soon as its length prefix is read. A larger one is read into a buffer that
// starts at growStart bytes and doubles as data arrives, so a peer
// announcing a huge frame and sending little costs little.
const (
	eagerFrame = 2 << 20
	growStart  = 64 << 10
)

// readGrowing reads the n-byte body of a frame whose length prefix is hdr,
// doubling its buffer as data arrives rather than trusting n up front.
func readGrowing(r io.Reader, hdr [LengthSize]byte, n int) ([]byte, error) {
	total := LengthSize + n
	frame := make([]byte, LengthSize, growStart)
	copy(frame, hdr[:])
	for len(frame) < total {
		if len(frame) == cap(frame) {
			grown := make([]byte, len(frame), min(2*cap(frame), total))
			copy(grown, frame)
			frame = grown
		}
		k, err := r.Read(frame[len(frame):cap(frame)])
		frame = frame[:len(frame)+k]
		if err != nil && len(frame) < total {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return frame, nil
}

func frameReadError(err error, n uint32) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: stream ended inside a %d-byte frame", ErrMalformed, n)
	}
	return err
}
