package wire

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
	"testing/iotest"

	apache "github.com/apache/thrift/lib/go/thrift"
	"github.com/cloudwego/gopkg/protocol/thrift"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

var samples = []Message{
	{Dst: 1, Src: 0, Auth: 0, Handle: mitogen.CALL_FUNCTION, ReplyTo: 1000, Data: []byte("hello")},
	{Dst: -1, Src: 2147483647, Auth: -2147483648, Handle: 5, ReplyTo: mitogen.IS_DEAD},
	{Dst: 7, Src: 3, Auth: 3, Handle: 1001, Data: bytes.Repeat([]byte{0, 0xff}, 70000)},
}

func TestRoundTrip(t *testing.T) {
	for _, m := range samples {
		frame := Encode(&m)
		got, err := ReadFrame(bytes.NewReader(frame), 1<<20)
		if err != nil {
			t.Fatalf("ReadFrame: %v", err)
		}
		if diff := cmp.Diff(m, got, cmpopts.IgnoreFields(Message{}, "Frame"), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
		if !bytes.Equal(got.Frame, frame) {
			t.Errorf("Frame is not the received frame")
		}
	}
}

// The generated codec and ours must agree byte for byte.
func TestMatchesGeneratedCodec(t *testing.T) {
	for _, m := range samples {
		env := &mitogen.Envelope{DstId: m.Dst, SrcId: m.Src, AuthId: m.Auth, Handle: m.Handle, ReplyTo: m.ReplyTo, Data: m.Data}
		if env.Data == nil {
			env.Data = []byte{}
		}
		gen := thrift.FastMarshal(env)
		ours := Encode(&m)[LengthSize:]
		if !bytes.Equal(gen, ours) {
			t.Fatalf("generated encoding differs from ours:\n gen %x\nours %x", gen[:min(64, len(gen))], ours[:min(64, len(ours))])
		}
		var back mitogen.Envelope
		if _, err := back.FastRead(ours); err != nil {
			t.Fatalf("generated FastRead of our frame: %v", err)
		}
	}
}

// Apache's own Go library, an independent implementation, reads our frames
// through TFramedTransport and TBinaryProtocol.
func TestApacheDecodesOurFrames(t *testing.T) {
	var stream bytes.Buffer
	for _, m := range samples {
		stream.Write(Encode(&m))
	}
	ctx := context.Background()
	cfg := &apache.TConfiguration{MaxFrameSize: 1 << 20}
	trans := apache.NewTFramedTransportConf(apache.NewStreamTransportR(&stream), cfg)
	proto := apache.NewTBinaryProtocolConf(trans, cfg)
	for i, want := range samples {
		var got Message
		if _, err := proto.ReadStructBegin(ctx); err != nil {
			t.Fatal(err)
		}
		for {
			_, typ, id, err := proto.ReadFieldBegin(ctx)
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			if typ == apache.STOP {
				break
			}
			switch id {
			case 1, 2, 3, 4, 5:
				v, err := proto.ReadI32(ctx)
				if err != nil {
					t.Fatal(err)
				}
				*[]*int32{&got.Dst, &got.Src, &got.Auth, &got.Handle, &got.ReplyTo}[id-1] = v
			case 6:
				if got.Data, err = proto.ReadBinary(ctx); err != nil {
					t.Fatal(err)
				}
			default:
				t.Fatalf("unexpected field %d", id)
			}
		}
		if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Message{}, "Frame"), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("frame %d (-want +got):\n%s", i, diff)
		}
	}
}

func TestFrameTooLargeBeforeAllocation(t *testing.T) {
	// A length prefix claiming 4 GiB and nothing behind it: must fail on the
	// size check, not by trying to allocate or read.
	_, err := ReadFrame(bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff}), 1<<20)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
}

func TestMalformed(t *testing.T) {
	good := Encode(&samples[0])
	cases := map[string][]byte{
		"empty frame":      {0, 0, 0, 0},
		"truncated prefix": {0, 0},
		"truncated body":   good[:len(good)-3],
		"data length lies": append(append([]byte{}, good[:LengthSize+HeaderSize-4]...), 0x7f, 0, 0, 0, 0),
		"bad field type":   {0, 0, 0, 2, 0x42, 0},
		"no stop":          good[:len(good)-1],
		"trailing garbage": {0, 0, 0, 2, 0, 0},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			// Fix the length prefix where the case changed the body.
			if name == "no stop" || name == "data length lies" {
				b = append([]byte{}, b...)
				n := len(b) - LengthSize
				b[0], b[1], b[2], b[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
			}
			_, err := ReadFrame(bytes.NewReader(b), 1<<20)
			if err == nil || errors.Is(err, io.EOF) {
				t.Fatalf("got %v, want a malformed-frame error", err)
			}
		})
	}
}

func TestCleanEOF(t *testing.T) {
	if _, err := ReadFrame(bytes.NewReader(nil), 100); err != io.EOF {
		t.Fatalf("got %v, want io.EOF", err)
	}
}

func TestDataOffset(t *testing.T) {
	m := samples[0]
	f := Encode(&m)
	if got := f[DataOffset : DataOffset+len(m.Data)]; !bytes.Equal(got, m.Data) {
		t.Fatalf("data not at DataOffset: %q", got)
	}
	if len(f) != DataOffset+len(m.Data)+len(Trailer) {
		t.Fatalf("frame length %d", len(f))
	}
}

// A declared frame length is not trusted either: a peer that announces a
// frame of MAX_FRAME_SIZE bytes and sends a few costs the reader memory in
// proportion to what it sent, not to what it announced.
func TestDeclaredFrameLengthNotPreallocated(t *testing.T) {
	hdr := binary.BigEndian.AppendUint32(nil, 100<<20)
	in := io.MultiReader(bytes.NewReader(hdr), bytes.NewReader(make([]byte, 10)))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := ReadFrame(in, 128<<20)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated frame: got %v, want malformed", err)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 2<<20 {
		t.Fatalf("reading 14 bytes of a frame declared 100 MiB allocated %d bytes", d)
	}
	// Large frames that do arrive whole still decode.
	big := Encode(&Message{Dst: 1, Handle: 2, Data: bytes.Repeat([]byte("z"), 5<<20+3)})
	m, err := ReadFrame(iotest.OneByteReader(bytes.NewReader(big[:4096])), 128<<20)
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("cut frame: %v %v", m.Dst, err)
	}
	m, err = ReadFrame(bytes.NewReader(big), 128<<20)
	if err != nil || len(m.Data) != 5<<20+3 || !bytes.Equal(m.Frame, big) {
		t.Fatalf("5 MiB frame: %v, %d bytes", err, len(m.Data))
	}
}

// PutHeader writes the same bytes as AppendHeader, so a frame built in
// place is the frame Encode makes.
func TestPutHeaderMatchesEncode(t *testing.T) {
	for _, m := range samples {
		b := make([]byte, DataOffset+len(m.Data)+1)
		if n := PutHeader(b, &m, len(m.Data)); n != DataOffset {
			t.Fatalf("PutHeader returned %d, want DataOffset %d", n, DataOffset)
		}
		copy(b[DataOffset:], m.Data)
		copy(b[DataOffset+len(m.Data):], Trailer)
		if want := Encode(&m); !bytes.Equal(b, want) {
			t.Errorf("PutHeader frame differs from Encode's for %v", &m)
		}
	}
}
