package core

import (
	"net"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
)

// frameOut is a frame this context encoded, ready to write: bufs in order.
// A Thrift message is encoded straight into the frame's buffer (no second
// copy into a frame), and binary fields of nocopyMin bytes or more are not
// copied at all: they are written from where they lie (a vectored write).
type frameOut struct {
	bufs net.Buffers
	// pooled is the router's pool buffer bufs are cut from (nil: none), to
	// give back once the frame is written.
	pooled []byte
	// borrowed: some of bufs belong to the caller (uncopied binary fields),
	// who may reuse them once the send returns; a frame that cannot be
	// written at once is copied before it is queued (see Stream.enqueueOut).
	borrowed bool
}

// nocopyMin is the size from which binary fields are written without a copy.
const nocopyMin = 16 << 10

// pooledOut is the frame size from which frame buffers come from the pool.
const pooledOut = 16 << 10

// size is the frame's length in bytes.
func (f *frameOut) size() int {
	n := 0
	for _, b := range f.bufs {
		n += len(b)
	}
	return n
}

// joined returns the frame as one buffer of its own (a copy when the frame
// has borrowed pieces or more than one).
func (f *frameOut) joined() []byte {
	if len(f.bufs) == 1 && !f.borrowed && f.pooled == nil {
		return f.bufs[0]
	}
	b := make([]byte, 0, f.size())
	for _, p := range f.bufs {
		b = append(b, p...)
	}
	return b
}

// inserts records where FastWriteNocopy left out binary fields
// (thrift.NocopyWriter): each is written after the encoded bytes before
// pos (counted from the start of the encoding).
type inserts struct {
	end  int // len of the buffer given to FastWriteNocopy, from its start
	base int // where that buffer starts in the encoding
	at   []insert
}

type insert struct {
	pos  int
	data []byte
}

// WriteDirect implements thrift.NocopyWriter: b goes where the encoder
// stands, remainCap bytes before the end of its buffer.
func (in *inserts) WriteDirect(b []byte, remainCap int) error {
	in.at = append(in.at, insert{pos: in.base + in.end - remainCap, data: b})
	return nil
}

// encodeOut encodes m's header and a Thrift message (name, type, seq,
// body) as its data into a frame. m.Src and m.Auth must be set; m.Data is
// not looked at. data, when the frame is one contiguous buffer, is its
// data bytes (else nil).
func (r *Router) encodeOut(m *wire.Message, name string, typ thrift.TMessageType, seq int32, body thrift.FastCodec) (out frameOut, data []byte) {
	n := thrift.Binary.MessageBeginLength(name) + body.BLength()
	total := wire.DataOffset + n + len(wire.Trailer)
	var buf []byte
	if total >= pooledOut {
		buf = r.frames.get(total)
		out.pooled = buf
	} else {
		buf = make([]byte, total)
	}
	payload := buf[wire.DataOffset : wire.DataOffset+n]
	i := thrift.Binary.WriteMessageBegin(payload, name, typ, seq)
	var ins *inserts
	var w thrift.NocopyWriter
	if n-i >= nocopyMin {
		ins = &inserts{end: n - i, base: i}
		w = ins
	}
	k := i + body.FastWriteNocopy(payload[i:], w)
	wire.PutHeader(buf, m, n)
	if ins == nil || len(ins.at) == 0 {
		if k != n {
			// BLength and the encoding disagree: send what was written,
			// with its true length.
			return r.plainOut(m, payload[:k])
		}
		copy(buf[wire.DataOffset+n:], wire.Trailer)
		out.bufs = net.Buffers{buf[:total]}
		return out, payload
	}
	// Interleave the encoded pieces with the binary fields left out.
	out.borrowed = true
	prev := 0
	sum := k
	for j, a := range ins.at {
		sum += len(a.data)
		if a.pos < prev || a.pos > k {
			// Not where an encoder can leave a field out: copy instead.
			return r.encodeCopied(m, name, typ, seq, body, out.pooled)
		}
		start := wire.DataOffset + prev
		if j == 0 {
			start = 0
		}
		out.bufs = append(out.bufs, buf[start:wire.DataOffset+a.pos], a.data)
		prev = a.pos
	}
	if sum != n {
		return r.encodeCopied(m, name, typ, seq, body, out.pooled)
	}
	out.bufs = append(out.bufs, buf[wire.DataOffset+prev:wire.DataOffset+k], wire.Trailer)
	return out, nil
}

// encodeCopied is encodeOut copying every field (a fallback).
func (r *Router) encodeCopied(m *wire.Message, name string, typ thrift.TMessageType, seq int32, body thrift.FastCodec, pooled []byte) (frameOut, []byte) {
	if pooled != nil {
		r.frames.put(pooled)
	}
	b := make([]byte, thrift.Binary.MessageBeginLength(name)+body.BLength())
	i := thrift.Binary.WriteMessageBegin(b, name, typ, seq)
	k := i + body.FastWriteNocopy(b[i:], nil)
	return r.plainOut(m, b[:k])
}

// plainOut is the frame of m with data.
func (r *Router) plainOut(m *wire.Message, data []byte) (frameOut, []byte) {
	mm := *m
	mm.Data = data
	return frameOut{bufs: net.Buffers{wire.Encode(&mm)}}, data
}

// sendMessage sends a Thrift message (name, type, seq, body) as the data of
// m from this context, encoded straight into its frame (see frameOut).
func (r *Router) sendMessage(m *wire.Message, name string, typ thrift.TMessageType, seq int32, body thrift.FastCodec) {
	m.Src = r.id
	m.Auth = r.id
	m.Frame = nil
	out, data := r.encodeOut(m, name, typ, seq, body)
	if m.Dst == r.id {
		// Delivered here: handlers take one contiguous, owned buffer.
		if data == nil || out.pooled != nil {
			b := out.joined()
			data = b[wire.DataOffset : len(b)-len(wire.Trailer)]
			if out.pooled != nil {
				r.frames.put(out.pooled)
			}
		}
		m.Data = data
		r.route(m, nil)
		return
	}
	m.Data = data
	r.routeOut(m, nil, &out)
}
