package fakessh_test

import (
	"context"
	"strings"
	"testing"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/fakessh"
)

// A run's Config: zero fields are the defaults, negative ones an error
// before anything starts.
func TestRunConfigValidate(t *testing.T) {
	if err := (fakessh.RunConfig{}).Validate(); err != nil {
		t.Fatalf("zero RunConfig: %v", err)
	}
	r := core.NewMaster(core.DefaultConfig())
	defer r.Close()
	rn := &fakessh.Runner{Router: r, Default: r.Context(1, "unused"), Config: fakessh.RunConfig{KillGrace: -1}}
	status, err := rn.Run(context.Background(), []string{"true"})
	if err == nil || !strings.Contains(err.Error(), "KillGrace") || status != 255 {
		t.Fatalf("negative KillGrace: status %d, %v; want 255 and an error naming it", status, err)
	}
}
