package agent

import (
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core"
)

// MITOGEN_READ_SPIN sets Config.ReadSpin: a duration up to MaxReadSpin,
// "off" or any zero for none; anything else leaves the default.
func TestApplyEnvReadSpin(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"":      core.DefaultReadSpin,
		"20us":  20 * time.Microsecond,
		"1ms":   time.Millisecond,
		"off":   -1,
		"0":     -1,
		"0s":    -1,
		"2ms":   core.DefaultReadSpin, // above MaxReadSpin
		"-5us":  core.DefaultReadSpin,
		"fast":  core.DefaultReadSpin,
		"50 us": core.DefaultReadSpin,
	} {
		t.Setenv(EnvReadSpin, v)
		cfg := core.DefaultConfig()
		ApplyEnv(&cfg)
		if cfg.ReadSpin != want {
			t.Errorf("%s=%q: ReadSpin %v, want %v", EnvReadSpin, v, cfg.ReadSpin, want)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s=%q: %v", EnvReadSpin, v, err)
		}
	}
}
