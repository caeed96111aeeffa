package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the frame reader: it must return a
// message or an error, never panic, and what it accepts must re-encode to a
// frame that decodes to the same message.
func FuzzDecode(f *testing.F) {
	for _, m := range samples {
		f.Add(Encode(&m))
	}
	f.Add([]byte{0, 0, 0, 1, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ReadFrame(bytes.NewReader(b), 1<<16)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrFrameTooLarge) && err != io.EOF {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		again, err := ReadFrame(bytes.NewReader(Encode(&m)), 1<<17)
		if err != nil {
			t.Fatalf("re-encoded frame does not decode: %v", err)
		}
		if again.Dst != m.Dst || again.Src != m.Src || again.Auth != m.Auth || again.Handle != m.Handle ||
			again.ReplyTo != m.ReplyTo || !bytes.Equal(again.Data, m.Data) {
			t.Fatalf("re-encoded frame decodes differently: %v vs %v", &m, &again)
		}
	})
}
