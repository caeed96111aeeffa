package agent

import (
	"context"

	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// DialTcp opens a TCP connection from this context for a peer (see
// DialRequest).
func (s *Service) DialTcp(ctx context.Context, req *mitogen.DialRequest) (*mitogen.DialReply, error) {
	if req == nil {
		return nil, &mitogen.CallError{Message: "dial_tcp: no DialRequest"}
	}
	return s.dials.DialTCP(ctx, s.Router, req)
}

// ListenTcp listens on a TCP port in this context for a peer (see
// ListenRequest).
func (s *Service) ListenTcp(ctx context.Context, req *mitogen.ListenRequest) (*mitogen.ListenReply, error) {
	if req == nil {
		return nil, &mitogen.CallError{Message: "listen_tcp: no ListenRequest"}
	}
	return s.dials.ListenTCP(ctx, s.Router, req)
}
