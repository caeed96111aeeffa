package core_test

import (
	"bytes"
	"context"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// After routers close, every goroutine they started has ended.
func TestNoGoroutineLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		m := core.NewMaster(core.DefaultConfig())
		child, c, _ := startChild(t, m, 1)
		ctx := context.Background()
		for i := 0; i < 20; i++ {
			if _, err := c.Agent().Echo(ctx, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		// A byte stream, a pending call cut by shutdown, a receiver.
		br := child.NewByteReader(ctx, 0)
		bw := m.NewByteWriter(ctx)
		bw.Connect(br.End())
		bw.Write(bytes.Repeat([]byte("y"), 1<<20))
		bw.Close()
		var got bytes.Buffer
		got.ReadFrom(br)
		pending := c.Go(ctx, mitogen.AgentSleepMethod, &mitogen.AgentSleepArgs{Millis: 60000}, &mitogen.AgentSleepResult{})
		rc := m.NewReceiver()
		_ = rc
		time.Sleep(20 * time.Millisecond)
		m.Close()
		child.Close()
		<-pending
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			var b bytes.Buffer
			pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
