package core_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// TestServiceErrorsReachCaller shows what a caller gets when a service
// registered with Router.Serve (any service, not only this module's own
// generated ones) fails: a *thrift.ApplicationException the service
// returns, wrapped or not, goes back with its own type and message (so an
// unknown method of a user's dispatcher is UNKNOWN_METHOD at the caller),
// a protocol error is PROTOCOL_ERROR and any other error INTERNAL_ERROR.
func TestServiceErrorsReachCaller(t *testing.T) {
	m, _ := testMaster(t)
	child, c, _ := startChild(t, m, 1)
	child.Serve("User", func(ctx context.Context, method string, args []byte) (thrift.FastCodec, error) {
		switch method {
		case "User:wrapped":
			return nil, fmt.Errorf("dispatching: %w", thrift.NewApplicationException(thrift.UNKNOWN_METHOD, "User has no method wrapped"))
		case "User:invalid":
			return nil, thrift.NewApplicationException(thrift.INVALID_PROTOCOL, "odd")
		case "User:proto":
			return nil, thrift.NewProtocolExceptionWithErr(errors.New("short"))
		case "User:plain":
			return nil, errors.New("plain failure")
		}
		return nil, thrift.NewApplicationException(thrift.UNKNOWN_METHOD, "User has no method "+method)
	})
	for method, want := range map[string]struct {
		code int32
		text string
	}{
		"User:nope":    {thrift.UNKNOWN_METHOD, "User has no method User:nope"},
		"User:wrapped": {thrift.UNKNOWN_METHOD, "User has no method wrapped"},
		"User:invalid": {thrift.INVALID_PROTOCOL, "odd"},
		"User:proto":   {thrift.PROTOCOL_ERROR, "short"},
		"User:plain":   {thrift.INTERNAL_ERROR, "plain failure"},
		"Other:x":      {thrift.UNKNOWN_METHOD, "serves no service"},
	} {
		err := c.CallFunction(ctxT(t), method, &mitogen.AgentPingArgs{}, &mitogen.AgentPingResult{})
		var ae *thrift.ApplicationException
		if !errors.As(err, &ae) || ae.TypeID() != want.code || !strings.Contains(ae.Msg(), want.text) {
			t.Errorf("%s: got %v, want an ApplicationException of type %d with %q", method, err, want.code, want.text)
			continue
		}
		if got := mitogen.IsUnknownMethod(err); got != (want.code == thrift.UNKNOWN_METHOD) {
			t.Errorf("%s: IsUnknownMethod = %v", method, got)
		}
	}
}
