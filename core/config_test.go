package core_test

import (
	"strings"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// Zero values mean the defaults; nonsense is refused with the field named.
func TestConfigValidate(t *testing.T) {
	for _, ok := range []core.Config{{}, core.DefaultConfig(), {StreamWindow: core.MinStreamWindow}, {MaxFrameSize: 1 << 20, MaxChunk: 64 << 10}, {ReadSpin: -1}, {ReadSpin: core.MaxReadSpin}} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
	for field, c := range map[string]core.Config{
		"MaxFrameSize":       {MaxFrameSize: -1},
		"MaxFrameSize ":      {MaxFrameSize: mitogen.MAX_FRAME_SIZE + 1},
		"MaxFrameSize  ":     {MaxFrameSize: 100},
		"MaxChunk":           {MaxFrameSize: 1 << 20, MaxChunk: 1 << 20},
		"MaxChunk ":          {MaxChunk: -5},
		"StreamWindow":       {StreamWindow: core.MinStreamWindow - 1},
		"StreamWindow ":      {StreamWindow: -1},
		"StreamQueueBytes":   {StreamQueueBytes: -1},
		"ReceiverQueueLen":   {ReceiverQueueLen: -1},
		"ReceiverQueueBytes": {ReceiverQueueBytes: 10},
		"MaxConcurrentCalls": {MaxConcurrentCalls: -2},
		"ShutdownGrace":      {ShutdownGrace: -time.Second},
		"StreamStallTimeout": {StreamStallTimeout: -time.Second},
		"ReadSpin":           {ReadSpin: core.MaxReadSpin + 1},
	} {
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), strings.TrimSpace(field)) {
			t.Errorf("%+v: %v, want an error naming %s", c, err, field)
		}
		if _, err := core.NewMasterChecked(c); err == nil {
			t.Errorf("NewMasterChecked(%+v) accepted it", c)
		}
		a, _ := socketpair(t)
		if _, err := core.Boot(a, c, nil); err == nil || !strings.Contains(err.Error(), strings.TrimSpace(field)) {
			t.Errorf("Boot with %+v: %v, want an error naming %s", c, err, field)
		}
		a.Close()
	}
	r, err := core.NewMasterChecked(core.Config{MaxConcurrentCalls: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := r.Config()
	want := core.DefaultConfig()
	if got.MaxConcurrentCalls != 3 || got.StreamWindow != want.StreamWindow || got.ShutdownGrace != core.ChildShutdownGrace || got.MaxFrameSize != want.MaxFrameSize || got.ReadSpin != core.DefaultReadSpin {
		t.Fatalf("effective config %+v: zero fields should be the defaults", got)
	}
}
