package agent

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core"
)

// TuneRuntime sets the Go runtime up for a mitogen process (master or
// agent), unless the user set the matching environment variable:
//
//   - GOMAXPROCS=1: a context is an I/O relay; every message hand-off
//     between goroutines on different Ps costs a cross-CPU wake-up, which
//     on a 2-core VM more than doubled the no-op round trip (50 µs vs 17 µs)
//     and halved stream throughput. Parallelism comes from having one
//     process per context. Measured again for issue 11 (512 MiB through
//     `cat` in a local context, ratio to the raw pipe, medians of 5, 2 CPUs
//     at load average 10-15 from other work): GOMAXPROCS=1 0.48 quiet and
//     0.29 with two busy loops beside it; GOMAXPROCS=2 0.44 and 0.21. More
//     Ps do not help a relay hold up when the CPUs are shared.
//   - GOGC=400 with a 32 MiB soft memory limit: collecting less often
//     doubled 1 MiB echo throughput, while the limit keeps the heap small
//     when it matters. Byte streams reuse their frame buffers (see
//     core.ByteWriter.ReadFrom), so a long stream keeps the heap flat; a
//     128 MiB limit measured 0.57 quiet and 0.21 loaded on the run above,
//     within the noise, and would let a master's RSS swell.
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

// EnvReadSpin is the environment variable that overrides
// core.Config.ReadSpin in the processes that call ApplyEnv (agents, the
// mitogen CLI and its persistent master, fakessh's ssh, mitogen-bench): a
// Go duration up to core.MaxReadSpin ("20us"), or "off" (or any zero
// duration) for no polling. Agents inherit it from their master's
// environment where the method passes the environment on (local, sudo).
const EnvReadSpin = "MITOGEN_READ_SPIN"

// ApplyEnv sets the fields of cfg that the environment overrides
// (EnvReadSpin); a value that does not parse, or is out of range, is
// ignored with a warning on stderr.
func ApplyEnv(cfg *core.Config) {
	v := os.Getenv(EnvReadSpin)
	if v == "" {
		return
	}
	d, err := time.ParseDuration(v)
	switch {
	case v == "off" || v == "0" || err == nil && d == 0:
		cfg.ReadSpin = -1
	case err != nil || d < 0 || d > core.MaxReadSpin:
		fmt.Fprintf(os.Stderr, "mitogen: ignoring %s=%q (want a duration up to %v, such as 50us, or off)\n", EnvReadSpin, v, core.MaxReadSpin)
	default:
		cfg.ReadSpin = d
	}
}
