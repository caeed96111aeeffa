package core

import (
	"errors"
	"fmt"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// DeadError is what a waiter gets instead of the message it waited for: the
// content of a dead message (idl: Dead), or a local failure of the same kind.
type DeadError struct {
	Reason  mitogen.DeadReason
	Message string
	// Context is the context the failure concerns, when known.
	Context int32
}

func (e *DeadError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("%s: %s", reasonText(e.Reason), e.Message)
	}
	return reasonText(e.Reason)
}

// Is makes errors.Is(err, ErrDisconnected) and friends work.
func (e *DeadError) Is(target error) bool {
	t, ok := target.(*DeadError)
	return ok && t.Message == "" && t.Context == 0 && t.Reason == e.Reason
}

// Sentinels for errors.Is, one per DeadReason.
var (
	ErrUnknownHandle = &DeadError{Reason: mitogen.DeadReason_UNKNOWN_HANDLE}
	ErrNoRoute       = &DeadError{Reason: mitogen.DeadReason_NO_ROUTE}
	ErrRefused       = &DeadError{Reason: mitogen.DeadReason_REFUSED}
	ErrSenderClosed  = &DeadError{Reason: mitogen.DeadReason_SENDER_CLOSED}
	ErrDisconnected  = &DeadError{Reason: mitogen.DeadReason_DISCONNECTED}
	ErrShutdown      = &DeadError{Reason: mitogen.DeadReason_SHUTDOWN}
	ErrOverflow      = &DeadError{Reason: mitogen.DeadReason_OVERFLOW}
	ErrMalformed     = &DeadError{Reason: mitogen.DeadReason_MALFORMED}
)

func reasonText(r mitogen.DeadReason) string {
	switch r {
	case mitogen.DeadReason_UNKNOWN_HANDLE:
		return "unknown handle"
	case mitogen.DeadReason_NO_ROUTE:
		return "no route"
	case mitogen.DeadReason_REFUSED:
		return "refused by policy"
	case mitogen.DeadReason_SENDER_CLOSED:
		return "sender closed"
	case mitogen.DeadReason_DISCONNECTED:
		return "context disconnected"
	case mitogen.DeadReason_SHUTDOWN:
		return "shutdown"
	case mitogen.DeadReason_OVERFLOW:
		return "receiver overflow"
	case mitogen.DeadReason_MALFORMED:
		return "malformed message"
	}
	return "dead message"
}

// deadFromMessage decodes a dead message's payload.
func deadFromMessage(m *wire.Message) *DeadError {
	var d mitogen.Dead
	if _, err := d.FastRead(m.Data); err != nil {
		return &DeadError{Reason: mitogen.DeadReason_MALFORMED, Message: fmt.Sprintf("undecodable dead message from context %d: %v", m.Src, err), Context: m.Src}
	}
	return &DeadError{Reason: d.Reason, Message: d.Message, Context: d.ContextId}
}

func encodeDead(e *DeadError) []byte {
	return thrift.FastMarshal(&mitogen.Dead{Reason: e.Reason, Message: e.Message, ContextId: e.Context})
}

// IsDead reports whether err is (or wraps) a DeadError.
func IsDead(err error) bool {
	var d *DeadError
	return errors.As(err, &d)
}

// ErrStalled ends a stream whose peer stopped reading: its write queue
// stayed full for Config.StreamStallTimeout (or at all, for a leaf child).
var ErrStalled = errors.New("x")
