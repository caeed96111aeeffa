package agent

import (
	"os"
	"runtime"
	"runtime/debug"
)

// TuneRuntime sets the Go runtime up for a mitogen process (master or
// agent), unless the user set the matching environment variable:
//
//   - GOMAXPROCS=1: a context is an I/O relay; every message hand-off
//     between goroutines on different Ps costs a cross-CPU wake-up, which
//     on a 2-core VM more than doubled the no-op round trip (50 µs vs 17 µs)
//     and halved stream throughput. Parallelism comes from having one
//     process per context.
//   - GOGC=400 with a 32 MiB soft memory limit: relays allocate a buffer per
//     chunk and keep little alive; collecting less often doubled 1 MiB echo
//     throughput, while the limit keeps the heap small when it matters.
//
// Binaries call it first thing in main; the library never does.
func TuneRuntime() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(32 << 20)
	}
}
