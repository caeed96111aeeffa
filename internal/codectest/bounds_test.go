package codectest

import (
	"encoding/binary"
	"errors"
	"os"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// allTypes lists one value of every struct type gen/mitogen generates;
// TestAllTypesListed keeps it complete.
var allTypes = []thrift.FastCodec{
	&mitogen.Envelope{}, &mitogen.Dead{}, &mitogen.Boot{}, &mitogen.Ready{}, &mitogen.RouteUpdate{},
	&mitogen.AllocateIDRequest{}, &mitogen.AllocateIDReply{}, &mitogen.LogAttr{}, &mitogen.LogRecord{},
	&mitogen.Credit{}, &mitogen.StreamEnd{}, &mitogen.ProcessSpec{}, &mitogen.ProcessStarted{},
	&mitogen.Control{}, &mitogen.ConnectRequest{}, &mitogen.ConnectReply{}, &mitogen.StartSlaveRequest{},
	&mitogen.CallError{}, &mitogen.IDGrant{}, &mitogen.WindowSize{}, &mitogen.PtyRequest{},
	&mitogen.AgentPingArgs{}, &mitogen.AgentPingResult{}, &mitogen.AgentEchoArgs{}, &mitogen.AgentEchoResult{},
	&mitogen.AgentConnectArgs{}, &mitogen.AgentConnectResult{},
	&mitogen.AgentStartProcessArgs{}, &mitogen.AgentStartProcessResult{},
	&mitogen.AgentStartFakesshArgs{}, &mitogen.AgentStartFakesshResult{},
	&mitogen.AgentSleepArgs{}, &mitogen.AgentSleepResult{},
	&mitogen.AgentReadFileArgs{}, &mitogen.AgentReadFileResult{},
	&mitogen.FakeSSHStartSlaveArgs{}, &mitogen.FakeSSHStartSlaveResult{},
	&mitogen.PersistHop{}, &mitogen.PersistChain{}, &mitogen.PersistStatus{}, &mitogen.PersistRun{},
	&mitogen.PersistentMasterStartProcessArgs{}, &mitogen.PersistentMasterStartProcessResult{},
	&mitogen.PersistentMasterPingArgs{}, &mitogen.PersistentMasterPingResult{},
	&mitogen.PersistentMasterStatusArgs{}, &mitogen.PersistentMasterStatusResult{},
	&mitogen.PersistentMasterStopArgs{}, &mitogen.PersistentMasterStopResult{},
	&mitogen.PersistentMasterOpenRunArgs{}, &mitogen.PersistentMasterOpenRunResult{},
	&mitogen.FakeSSHJoinArgs{}, &mitogen.FakeSSHJoinResult{}, &mitogen.FakeSSHJoined{}, &mitogen.FakeSSHProgram{},
	&mitogen.DialRequest{}, &mitogen.DialReply{}, &mitogen.AgentDialTcpArgs{}, &mitogen.AgentDialTcpResult{},
	&mitogen.ListenRequest{}, &mitogen.ListenReply{}, &mitogen.Accepted{}, &mitogen.ListenControl{},
	&mitogen.AgentListenTcpArgs{}, &mitogen.AgentListenTcpResult{},
	&mitogen.DestinationReply{}, &mitogen.FakeDialRequest{}, &mitogen.FakeListenRequest{},
	&mitogen.FakeSSHDestinationArgs{}, &mitogen.FakeSSHDestinationResult{},
	&mitogen.FakeSSHDialArgs{}, &mitogen.FakeSSHDialResult{}, &mitogen.FakeSSHListenArgs{}, &mitogen.FakeSSHListenResult{},
	&mitogen.FdHandoff{},
}

func TestAllTypesListed(t *testing.T) {
	src, err := os.ReadFile("../../gen/mitogen/k-mitogen.go")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, m := range regexp.MustCompile(`func \(p \*(\w+)\) FastRead\(`).FindAllStringSubmatch(string(src), -1) {
		want = append(want, m[1])
	}
	var got []string
	for _, v := range allTypes {
		got = append(got, reflect.TypeOf(v).Elem().Name())
	}
	sort.Strings(want)
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("allTypes lists\n%v\nbut gen/mitogen generates\n%v", got, want)
	}
}

const huge = 1<<31 - 1

// ttype is the wire type of a Go field type of the generated code.
func ttype(t reflect.Type) thrift.TType {
	switch t.Kind() {
	case reflect.Bool:
		return thrift.BOOL
	case reflect.Int8:
		return thrift.BYTE
	case reflect.Int16:
		return thrift.I16
	case reflect.Int32:
		return thrift.I32
	case reflect.Int64:
		return thrift.I64
	case reflect.Float64:
		return thrift.DOUBLE
	case reflect.String:
		return thrift.STRING
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return thrift.STRING
		}
		return thrift.LIST
	case reflect.Map:
		return thrift.MAP
	case reflect.Pointer:
		return thrift.STRUCT
	}
	panic("unexpected field type " + t.String())
}

// hostile returns, for struct type st, one payload per container reachable
// from it (through nested struct fields too) declaring huge elements, each
// named by its field path.
func hostile(st reflect.Type, path string) map[string][]byte {
	out := map[string][]byte{}
	for i := 0; i < st.NumField(); i++ {
		f := st.Field(i)
		tag := f.Tag.Get("thrift")
		if tag == "" {
			continue
		}
		parts := strings.Split(tag, ",")
		id, err := strconv.Atoi(parts[1])
		if err != nil {
			panic(err)
		}
		typ := ttype(f.Type)
		hdr := []byte{byte(typ), byte(id >> 8), byte(id)}
		name := path + "." + f.Name
		switch typ {
		case thrift.LIST:
			b := append(hdr, byte(ttype(f.Type.Elem())))
			b = binary.BigEndian.AppendUint32(b, huge)
			out[name] = append(b, make([]byte, 16)...)
		case thrift.MAP:
			b := append(hdr, byte(ttype(f.Type.Key())), byte(ttype(f.Type.Elem())))
			b = binary.BigEndian.AppendUint32(b, huge)
			out[name] = append(b, make([]byte, 16)...)
		case thrift.STRUCT:
			for n, inner := range hostile(f.Type.Elem(), name) {
				out[n] = append(append([]byte{}, hdr...), inner...)
			}
		}
	}
	return out
}

// TestHugeDeclaredSizes feeds every generated struct a payload declaring
// 2^31-1 elements for each of its containers (nested ones included) and
// checks that decoding fails with an INVALID_DATA protocol exception
// without allocating for the declared size.
func TestHugeDeclaredSizes(t *testing.T) {
	n := 0
	for _, v := range allTypes {
		st := reflect.TypeOf(v).Elem()
		for name, b := range hostile(st, st.Name()) {
			n++
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := reflect.New(st).Interface().(thrift.FastCodec).FastRead(b)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Errorf("%s: a huge declared size decoded without error", name)
				continue
			}
			var pe *thrift.ProtocolException
			if !errors.As(err, &pe) || pe.TypeID() != thrift.INVALID_DATA || !strings.Contains(err.Error(), "2147483647 elements") {
				t.Errorf("%s: error %v, want an INVALID_DATA protocol exception naming the declared size", name, err)
			}
			if d := after.TotalAlloc - before.TotalAlloc; d > 64<<10 {
				t.Errorf("%s: decoding a %d-byte payload allocated %d bytes", name, len(b), d)
			}
		}
	}
	// Boot, LogRecord, ProcessSpec (argv, env), ConnectRequest and the
	// args/results and requests that contain them.
	if n < 10 {
		t.Fatalf("only %d hostile payloads built: the generator walked too little", n)
	}
}

// TestExactSizesDecode checks the bound is not too tight: containers filled
// with the smallest possible elements still decode.
func TestExactSizesDecode(t *testing.T) {
	spec := &mitogen.ProcessSpec{
		Argv: []string{"", "", ""},
		Env:  map[string]string{"": ""},
	}
	req := &mitogen.FakeSSHStartSlaveArgs{Req: &mitogen.StartSlaveRequest{Spec: spec}}
	rec := &mitogen.LogRecord{Attrs: []*mitogen.LogAttr{{}, {}}}
	boot := &mitogen.Boot{ParentIds: []int32{1, 2, 0}}
	for _, v := range []thrift.FastCodec{req, rec, boot, &mitogen.ConnectRequest{Options: map[string]string{"a": ""}}} {
		b := make([]byte, v.BLength())
		v.FastWriteNocopy(b, nil)
		got := reflect.New(reflect.TypeOf(v).Elem()).Interface().(thrift.FastCodec)
		if _, err := got.FastRead(b); err != nil {
			t.Errorf("%T: %v", v, err)
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("%T: decoded %+v, want %+v", v, got, v)
		}
	}
	// A list<string> of 3 needs 12 more bytes after its header; with only
	// 11 it is refused before allocating.
	b := []byte{byte(thrift.LIST), 0, 1, byte(thrift.STRING), 0, 0, 0, 3}
	b = append(b, make([]byte, 11)...)
	if _, err := new(mitogen.ProcessSpec).FastRead(b); err == nil || !strings.Contains(err.Error(), "3 elements of at least 4 bytes") {
		t.Errorf("short list<string>: %v", err)
	}
}

// allocDuring returns the bytes allocated while f runs.
func allocDuring(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestListAllocationFollowsPayload: the element count of a list is bounded
// by the bytes remaining, but one wire byte (an empty struct's STOP) may
// stand for an 8-byte slice slot. A LogRecord whose attrs declare as many
// elements as there are bytes left, the first of which is a LogAttr whose
// only field is an unknown 16 MiB string (skipped, not allocated), must not
// preallocate a slice for the declared count before it runs out of bytes.
func TestListAllocationFollowsPayload(t *testing.T) {
	const n = 16 << 20
	b := []byte{byte(thrift.LIST), 0, 4, byte(thrift.STRUCT)}
	b = binary.BigEndian.AppendUint32(b, n+8)
	b = append(b, byte(thrift.STRING), 0, 99)
	b = binary.BigEndian.AppendUint32(b, n)
	b = append(b, make([]byte, n)...)
	b = append(b, 0) // the LogAttr's STOP; the second element is missing
	var err error
	d := allocDuring(func() { _, err = new(mitogen.LogRecord).FastRead(b) })
	if err == nil {
		t.Fatal("a list with one of its declared elements decoded without error")
	}
	if d > uint64(len(b)) {
		t.Errorf("decoding a %d-byte LogRecord allocated %d bytes (%.1f per payload byte)", len(b), d, float64(d)/float64(len(b)))
	}
}

// TestMapAllocationFollowsPayload: a map<string,string> declaring one entry
// per 8 bytes left, all of them ("", ""), decodes to a map of one entry and
// must not pre-size a map for the declared count.
func TestMapAllocationFollowsPayload(t *testing.T) {
	const n = 16 << 20
	for _, tc := range []struct {
		name string
		v    thrift.FastCodec
		id   int
	}{{"ProcessSpec.env", new(mitogen.ProcessSpec), 5}, {"ConnectRequest.options", new(mitogen.ConnectRequest), 0}} {
		id := tc.id
		if id == 0 {
			f, ok := reflect.TypeOf(tc.v).Elem().FieldByName("Options")
			if !ok {
				t.Fatal("ConnectRequest has no Options")
			}
			id, _ = strconv.Atoi(strings.Split(f.Tag.Get("thrift"), ",")[1])
		}
		b := []byte{byte(thrift.MAP), byte(id >> 8), byte(id), byte(thrift.STRING), byte(thrift.STRING)}
		b = binary.BigEndian.AppendUint32(b, n/8)
		b = append(b, make([]byte, n)...)
		b = append(b, 0)
		var err error
		d := allocDuring(func() { _, err = tc.v.FastRead(b) })
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if d > 1<<20 {
			t.Errorf("%s: decoding a %d-byte payload holding one map entry allocated %d bytes", tc.name, len(b), d)
		}
	}
}

// TestRealElementsAllocation: a LogRecord of 4 MiB of empty attrs (one
// STOP byte each) decodes; besides the LogAttr structs themselves, the
// slice of pointers may cost at most 16 bytes per attr (growth by doubling
// up to the declared count; append's own 1.25 growth would cost 40).
func TestRealElementsAllocation(t *testing.T) {
	const n = 4 << 20
	b := []byte{byte(thrift.LIST), 0, 4, byte(thrift.STRUCT)}
	b = binary.BigEndian.AppendUint32(b, n)
	b = append(b, make([]byte, n+1)...)
	var rec mitogen.LogRecord
	var err error
	d := allocDuring(func() { _, err = rec.FastRead(b) })
	if err != nil || len(rec.Attrs) != n {
		t.Fatalf("decoded %d attrs, err %v", len(rec.Attrs), err)
	}
	elems := uint64(n) * uint64(unsafe.Sizeof(mitogen.LogAttr{}))
	if limit := elems + 16*uint64(n) + 1<<20; d > limit {
		t.Errorf("decoding %d empty attrs allocated %d bytes, more than %d (the attrs take %d)", n, d, limit, elems)
	}
}
