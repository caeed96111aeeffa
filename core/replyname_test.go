package core_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// REPLY and EXCEPTION messages carry the bare method name and the call's
// seqid, as Apache's multiplexed servers reply, so stock generated clients
// (which look replies up by "ping", not "Agent:ping") decode them.
func TestReplyCarriesBareMethodName(t *testing.T) {
	conn, _ := rawParent(t, 5)
	for i, tc := range []struct {
		method, want string
		typ          thrift.TMessageType
	}{
		{mitogen.AgentPingMethod, "ping", thrift.REPLY},
		{"Agent:nope", "nope", thrift.EXCEPTION},
		{"Nothing:ping", "ping", thrift.EXCEPTION},
		{"noservice", "noservice", thrift.EXCEPTION},
	} {
		reply := int32(2000 + i)
		seq := int32(40 + i)
		conn.Write(wire.Encode(&wire.Message{Dst: 5, Handle: mitogen.CALL_FUNCTION, ReplyTo: reply, Data: callMsg(tc.method, seq, []byte{0})}))
		m := readFor(t, conn, reply)
		name, typ, gotSeq, _, err := thrift.Binary.ReadMessageBegin(m.Data)
		if err != nil || name != tc.want || typ != tc.typ || gotSeq != seq {
			t.Errorf("%s: reply %q type %d seq %d (%v), want %q type %d seq %d", tc.method, name, typ, gotSeq, err, tc.want, tc.typ, seq)
		}
	}
}

// The Go caller matches a reply on its seqid and on the method name (bare,
// or the full "Service:method" older agents sent), and refuses any other.
func TestCallerChecksReplyNameAndSeqid(t *testing.T) {
	m, _ := testMaster(t)
	conn := rawChild(t, m, 7)
	answer := func(name func(string) string, seq func(int32) int32, typ thrift.TMessageType) error {
		pending := m.Context(7, "").Go(ctxT(t), mitogen.AgentPingMethod, &mitogen.AgentPingArgs{}, &mitogen.AgentPingResult{})
		req, err := wire.ReadFrame(conn, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		method, _, s, _, err := thrift.Binary.ReadMessageBegin(req.Data)
		if err != nil || method != mitogen.AgentPingMethod {
			t.Fatalf("call: %q %v", method, err)
		}
		n := name(method)
		b := make([]byte, thrift.Binary.MessageBeginLength(n))
		thrift.Binary.WriteMessageBegin(b, n, typ, seq(s))
		if typ == thrift.EXCEPTION {
			b = append(b, fastMarshal(thrift.NewApplicationException(thrift.INTERNAL_ERROR, "boom"))...)
		} else {
			b = append(b, 0)
		}
		conn.Write(wire.Encode(&wire.Message{Dst: 0, Src: 7, Auth: 7, Handle: req.ReplyTo, Data: b}))
		return <-pending
	}
	bare := func(s string) string { return s[strings.IndexByte(s, ':')+1:] }
	full := func(s string) string { return s }
	same := func(s int32) int32 { return s }
	if err := answer(bare, same, thrift.REPLY); err != nil {
		t.Errorf("bare name: %v", err)
	}
	if err := answer(full, same, thrift.REPLY); err != nil {
		t.Errorf("full name: %v", err)
	}
	var ae *thrift.ApplicationException
	if err := answer(bare, same, thrift.EXCEPTION); !errors.As(err, &ae) || ae.TypeID() != thrift.INTERNAL_ERROR {
		t.Errorf("exception: %v", err)
	}
	if err := answer(bare, func(s int32) int32 { return s + 1 }, thrift.REPLY); !errors.As(err, &ae) || ae.TypeID() != thrift.BAD_SEQUENCE_ID {
		t.Errorf("wrong seqid: got %v, want BAD_SEQUENCE_ID", err)
	}
	if err := answer(func(string) string { return "echo" }, same, thrift.REPLY); !errors.As(err, &ae) || ae.TypeID() != thrift.WRONG_METHOD_NAME {
		t.Errorf("wrong name: got %v, want WRONG_METHOD_NAME", err)
	}
	if err := answer(bare, same, thrift.CALL); !errors.As(err, &ae) || ae.TypeID() != thrift.INVALID_MESSAGE_TYPE_EXCEPTION {
		t.Errorf("CALL as a reply: got %v, want INVALID_MESSAGE_TYPE", err)
	}
}

// A call's reply handle takes replies only from the context called (and
// dead messages only from this router or from the stream toward it): a
// sibling that guesses the handle and seqid cannot answer in its place nor
// kill the call.
func TestSiblingCannotForgeReply(t *testing.T) {
	m, _ := testMaster(t)
	target := rawChild(t, m, 7)
	sibling := rawChild(t, m, 8)
	sync := func() {
		rc := m.NewReceiver()
		defer rc.Close()
		sibling.Write(wire.Encode(&wire.Message{Dst: 0, Src: 8, Auth: 8, Handle: rc.Handle(), Data: []byte("sync")}))
		if _, err := rc.Get(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	reply := func(data string, seq int32) []byte {
		b := make([]byte, thrift.Binary.MessageBeginLength("echo"))
		thrift.Binary.WriteMessageBegin(b, "echo", thrift.REPLY, seq)
		return append(b, fastMarshal(&mitogen.AgentEchoResult{Success: []byte(data)})...)
	}
	type res struct {
		b   []byte
		err error
	}
	done := make(chan res, 1)
	go func() {
		b, err := m.Context(7, "").Agent().Echo(ctxT(t), []byte("x"))
		done <- res{b, err}
	}()
	call, err := wire.ReadFrame(target, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	_, _, seq, _, err := thrift.Binary.ReadMessageBegin(call.Data)
	if err != nil {
		t.Fatal(err)
	}
	sibling.Write(wire.Encode(&wire.Message{Dst: 0, Src: 8, Auth: 8, Handle: call.ReplyTo, Data: reply("forged", seq)}))
	sibling.Write(wire.Encode(&wire.Message{Dst: 0, Src: 8, Auth: 8, Handle: call.ReplyTo, ReplyTo: mitogen.IS_DEAD,
		Data: fastMarshal(&mitogen.Dead{Reason: mitogen.DeadReason_DISCONNECTED, Message: "forged", ContextId: 7})}))
	sync()
	target.Write(wire.Encode(&wire.Message{Dst: 0, Src: 7, Auth: 7, Handle: call.ReplyTo, Data: reply("genuine", seq)}))
	got := <-done
	if got.err != nil || string(got.b) != "genuine" {
		t.Fatalf("echo returned %q, %v; want the target's reply", got.b, got.err)
	}
}
