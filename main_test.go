package mitogen_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	mitogen "github.com/seed-a176d0ab/mitogen-go"
	"github.com/seed-a176d0ab/mitogen-go/core"
	gen "github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// The test binary is its own agent and fakessh's ssh, as any program
// embedding mitogen-go is: Main serves those roles and returns otherwise.
// It also registers a user service, "Mirror" (the Agent service's echo
// under another name, reversed), in every context it runs as, and fails
// the boot of a context whose environment asks it to.
func TestMain(m *testing.M) {
	mitogen.Main(mitogen.WithService(serveMirror))
	os.Exit(m.Run())
}

// mirror implements gen.Agent's echo by reversing its argument.
type mirror struct{ gen.Agent }

func (mirror) Echo(_ context.Context, data []byte) ([]byte, error) {
	out := make([]byte, len(data))
	for i, b := range data {
		out[len(data)-1-i] = b
	}
	return out, nil
}

func serveMirror(r *core.Router) error {
	if os.Getenv("MITOGEN_TEST_FAIL_SERVICE") != "" {
		return errors.New("mirror refuses to start")
	}
	r.Serve("Mirror", func(ctx context.Context, method string, args []byte) (thrift.FastCodec, error) {
		return gen.DispatchAgent(ctx, mirror{}, "Agent:"+strings.TrimPrefix(method, "Mirror:"), args)
	})
	return nil
}

// mirrorCaller calls Mirror's methods through the generated Agent client.
type mirrorCaller struct{ c *mitogen.Context }

func (m mirrorCaller) CallFunction(ctx context.Context, method string, args, result thrift.FastCodec) error {
	return m.c.CallFunction(ctx, "Mirror:"+strings.TrimPrefix(method, "Agent:"), args, result)
}

// A service registered with WithService answers in a context the master
// started (and in a context that context started), next to the Agent
// service.
func TestWithServiceServesInEveryContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, err := mitogen.NewMaster(mitogen.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c1, err := m.Connect(ctx, mitogen.Local())
	if err != nil {
		t.Fatal(err)
	}
	c2, err := c1.Connect(ctx, mitogen.Local())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*mitogen.Context{c1, c2} {
		got, err := (&gen.AgentClient{Caller: mirrorCaller{c}}).Echo(ctx, []byte("abc"))
		if err != nil || string(got) != "cba" {
			t.Fatalf("Mirror:echo in context %d: %q, %v", c.ID(), got, err)
		}
	}
}

// A service whose registration fails ends its agent before it reports
// ready: Connect fails (the agent prints why on its stderr, which a local
// context shares with the master).
func TestWithServiceFailureFailsConnect(t *testing.T) {
	t.Setenv("MITOGEN_TEST_FAIL_SERVICE", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, err := mitogen.NewMaster(mitogen.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, err = m.Connect(ctx, mitogen.Local())
	if err == nil {
		t.Fatal("Connect succeeded with a failing user service")
	}
	if !strings.Contains(err.Error(), "no Ready") {
		t.Errorf("Connect failed for another reason: %v", err)
	}
}
