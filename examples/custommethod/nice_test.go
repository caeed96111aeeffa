package custommethod_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/examples/custommethod"
	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
)

// niceOf reads a context's niceness from /proc/self/stat (field 19).
func niceOf(t *testing.T, ctx context.Context, c *core.Context) string {
	t.Helper()
	b, err := c.Agent().ReadFile(ctx, "/proc/self/stat", 0)
	if err != nil {
		t.Fatal(err)
	}
	return niceField(t, string(b))
}

func niceField(t *testing.T, s string) string {
	f := strings.Fields(s[strings.LastIndex(s, ")")+1:])
	if len(f) < 17 {
		t.Fatalf("short stat %q", s)
	}
	return f[16]
}

// A method added without editing mitogen-go: registered in a registry of
// this program's own, given typed options, and dialed as the first hop of
// a chain whose second hop (built in) the nice agent starts.
func TestCustomMethodReachesContext(t *testing.T) {
	if _, err := exec.LookPath("nice"); err != nil {
		t.Skip("nice(1) is not installed")
	}
	bin := filepath.Join(t.TempDir(), "mitogen")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/seed-a176d0ab/mitogen-go/cmd/mitogen").CombinedOutput(); err != nil {
		t.Fatalf("building mitogen: %v\n%s", err, out)
	}
	methods, err := transport.NewRegistry(transport.LocalMethod, custommethod.Method)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := methods.ParseSpec("nice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := methods.ParseSpec("sudo:root"); err == nil || !strings.Contains(err.Error(), "local, nice") {
		t.Fatalf("unknown kind: %v", err)
	}
	builder := agent.NewRegistry(&bootstrap.Agent{Path: bin})
	builder.Methods = methods

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := core.NewMaster(core.DefaultConfig())
	defer r.Close()
	var sent []map[string]string
	d := &agent.Dialer{Methods: methods, Transports: builder.Transport,
		Sent: func(_ int, _ transport.Spec, o map[string]string) { sent = append(sent, o) }}
	chain, err := d.Dial(ctx, r, []agent.Hop{
		{Spec: spec, Options: &custommethod.Options{Level: 7, CacheDir: t.TempDir()}},
		{Spec: transport.Spec{Kind: transport.KindLocal}},
	})
	if err != nil {
		t.Fatal(err)
	}
	own, _ := os.ReadFile("/proc/self/stat")
	base, _ := strconv.Atoi(niceField(t, string(own)))
	want := strconv.Itoa(min(base+7, 19))
	if n := niceOf(t, ctx, chain[0]); n != want {
		t.Fatalf("the nice hop's agent has niceness %s, want %s", n, want)
	}
	if n := niceOf(t, ctx, chain[1]); n != want {
		t.Fatalf("its local child has niceness %s, want %s (inherited)", n, want)
	}
	if len(sent) != 2 || sent[0]["level"] != "7" || len(sent[1]) != 0 {
		t.Fatalf("options sent per hop: %v", sent)
	}
	// Options are checked before anything starts.
	_, err = d.Dial(ctx, r, []agent.Hop{{Spec: spec, Options: &custommethod.Options{Level: 40}}})
	if err == nil || !strings.Contains(err.Error(), "level") {
		t.Fatalf("level 40: %v", err)
	}
}
