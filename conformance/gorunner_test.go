package conformance

// The Go runner of the conformance cases (cases/*.json, described in
// cases/README.md). Like the Python and Node runners it is a master that
// speaks raw frames to a real `mitogen agent` child: it uses core/wire for
// framing and the generated types for payloads, and none of core's routing,
// calls or byte streams, so that it checks the agent from outside.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

const (
	caseAgentID       = 1        // the ID the runner gives the agent in Boot
	chunkOverhead     = 64       // credit charged per chunk on top of its length
	caseMaxFrame      = 16 << 20 // announced in Boot.max_frame_size and enforced
	caseDefaultWindow = 4 << 20
	caseDefaultTime   = 20 * time.Second
)

// caseFile is one file of cases/.
type caseFile struct {
	Description string     `json:"description"`
	Cases       []confCase `json:"cases"`
}

type confCase struct {
	Name        string  `json:"name"`
	Rule        string  `json:"rule"`
	Description string  `json:"description"`
	TimeoutS    float64 `json:"timeout_s"`
	Quiet       bool    `json:"quiet"`
	Steps       []step  `json:"steps"`
}

type step struct {
	Op string `json:"op"`
	// call
	Method     string          `json:"method"`
	Args       json.RawMessage `json:"args"`
	ArgsRaw    *byteSpec       `json:"args_raw"`
	PayloadRaw *byteSpec       `json:"payload_raw"`
	Frame      map[string]any  `json:"frame"`
	// process
	Spec         json.RawMessage           `json:"spec"`
	StdoutWindow int64                     `json:"stdout_window"`
	StderrWindow int64                     `json:"stderr_window"`
	Stdin        *byteSpec                 `json:"stdin"`
	StdinChunk   int                       `json:"stdin_chunk"`
	StdinMode    string                    `json:"stdin_mode"`
	Start        map[string]map[string]any `json:"start"`
	Inject       []inject                  `json:"inject"`

	Expect expectation `json:"expect"`
}

type inject struct {
	AfterStdinBytes int            `json:"after_stdin_bytes"`
	Frame           map[string]any `json:"frame"`
}

type expectation struct {
	Returns    json.RawMessage `json:"returns"` // "null" for a void method
	Throws     map[string]any  `json:"throws"`
	Exception  string          `json:"exception"`
	Dead       string          `json:"dead"`
	Stdout     *byteSpec       `json:"stdout"`
	Stderr     *byteSpec       `json:"stderr"`
	ExitStatus *int32          `json:"exit_status"`
	Exit       string          `json:"exit"`
	Refused    bool            `json:"refused"`
}

// byteSpec is a byte string written readably (see README.md).
type byteSpec struct {
	Text   *string `json:"text"`
	Hex    *string `json:"hex"`
	Repeat *string `json:"repeat"`
	Size   int     `json:"size"`
	Seq    []int   `json:"seq"`
	Sha256 string  `json:"sha256"`
}

var spaces = regexp.MustCompile(`\s+`)

func (b *byteSpec) bytes() ([]byte, error) {
	switch {
	case b.Text != nil:
		return []byte(*b.Text), nil
	case b.Hex != nil:
		return hex.DecodeString(spaces.ReplaceAllString(*b.Hex, ""))
	case b.Repeat != nil:
		if *b.Repeat == "" {
			return nil, errors.New("case error: empty repeat unit")
		}
		return bytes.Repeat([]byte(*b.Repeat), b.Size/len(*b.Repeat)+1)[:b.Size], nil
	case len(b.Seq) == 2:
		var buf bytes.Buffer
		for i := b.Seq[0]; i <= b.Seq[1]; i++ {
			buf.WriteString(strconv.Itoa(i))
			buf.WriteByte('\n')
		}
		return buf.Bytes(), nil
	}
	return nil, fmt.Errorf("case error: byte spec %+v gives no bytes", *b)
}

// digest is the spec's sha256 (hex) and length.
func (b *byteSpec) digest() (string, int, error) {
	if b.Sha256 != "" {
		return b.Sha256, b.Size, nil
	}
	v, err := b.bytes()
	if err != nil {
		return "", 0, err
	}
	sum := sha256.Sum256(v)
	return hex.EncodeToString(sum[:]), len(v), nil
}

func isByteSpec(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	for _, k := range []string{"text", "hex", "repeat", "seq", "sha256"} {
		if _, ok := m[k]; ok {
			return true
		}
	}
	return false
}

func asByteSpec(v any) (*byteSpec, error) {
	b, _ := json.Marshal(v)
	var s byteSpec
	if err := strictUnmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("case error: byte spec %s: %w", b, err)
	}
	return &s, nil
}

func strictUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// loadCases reads every case file in dir, in name order.
func loadCases(dir string) ([]confCase, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var all []confCase
	seen := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var cf caseFile
		if err := strictUnmarshal(b, &cf); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, c := range cf.Cases {
			if c.Name == "" || seen[c.Name] || c.Rule == "" || len(c.Steps) == 0 {
				return nil, fmt.Errorf("%s: case %q: needs a unique name, a rule and steps", f, c.Name)
			}
			seen[c.Name] = true
			all = append(all, c)
		}
	}
	return all, nil
}

// toWire turns a JSON value from a case into what encoding/json decodes
// into generated structs: byte specs become base64 strings.
func toWire(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		if isByteSpec(x) {
			s, err := asByteSpec(x)
			if err != nil {
				return nil, err
			}
			b, err := s.bytes()
			return base64.StdEncoding.EncodeToString(b), err
		}
		out := map[string]any{}
		for k, e := range x {
			w, err := toWire(e)
			if err != nil {
				return nil, err
			}
			out[k] = w
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			w, err := toWire(e)
			if err != nil {
				return nil, err
			}
			out[i] = w
		}
		return out, nil
	}
	return v, nil
}

// fill decodes a case's JSON value into a generated struct.
func fill(raw any, into any) error {
	w, err := toWire(raw)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(w)
	if err := strictUnmarshal(b, into); err != nil {
		return fmt.Errorf("case error: %s into %T: %w", b, into, err)
	}
	return nil
}

// match compares expected (a subset, from the case) with actual (a value
// of the generated types) and returns the differences.
func match(expected, actual any, where string) []string {
	b, _ := json.Marshal(actual)
	var plain any
	_ = json.Unmarshal(b, &plain)
	return matchPlain(expected, plain, where)
}

func matchPlain(expected, actual any, where string) []string {
	switch e := expected.(type) {
	case nil:
		if actual != nil {
			return []string{fmt.Sprintf("%s: want none, got %v", where, actual)}
		}
		return nil
	case map[string]any:
		if isByteSpec(e) {
			s, err := asByteSpec(e)
			if err != nil {
				return []string{err.Error()}
			}
			want, n, err := s.digest()
			if err != nil {
				return []string{err.Error()}
			}
			str, ok := actual.(string)
			if actual == nil {
				str, ok = "", true // omitted empty binary
			}
			got, err := base64.StdEncoding.DecodeString(str)
			if !ok || err != nil {
				return []string{fmt.Sprintf("%s: want bytes, got %v", where, actual)}
			}
			sum := sha256.Sum256(got)
			if hex.EncodeToString(sum[:]) != want || len(got) != n {
				return []string{fmt.Sprintf("%s: want %d bytes (sha256 %.16s), got %s", where, n, want, show(got, 60))}
			}
			return nil
		}
		a, ok := actual.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want a struct, got %v", where, actual)}
		}
		var out []string
		for k, v := range e {
			out = append(out, matchPlain(v, a[k], where+"."+k)...)
		}
		return out
	case []any:
		a, ok := actual.([]any)
		if !ok || len(a) != len(e) {
			return []string{fmt.Sprintf("%s: want %v, got %v", where, e, actual)}
		}
		var out []string
		for i := range e {
			out = append(out, matchPlain(e[i], a[i], fmt.Sprintf("%s[%d]", where, i))...)
		}
		return out
	}
	if fmt.Sprint(expected) != fmt.Sprint(actual) {
		return []string{fmt.Sprintf("%s: want %v, got %v", where, expected, actual)}
	}
	return nil
}

func show(b []byte, n int) string {
	if len(b) > n {
		return fmt.Sprintf("%q... (%d bytes)", b[:n], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// agentMethod is what the runner knows of one Agent method.
type agentMethod struct {
	args   func() thrift.FastCodec
	result func() thrift.FastCodec
	void   bool
}

var agentMethods = map[string]agentMethod{
	"ping":          {func() thrift.FastCodec { return &mitogen.AgentPingArgs{} }, func() thrift.FastCodec { return &mitogen.AgentPingResult{} }, true},
	"echo":          {func() thrift.FastCodec { return &mitogen.AgentEchoArgs{} }, func() thrift.FastCodec { return &mitogen.AgentEchoResult{} }, false},
	"sleep":         {func() thrift.FastCodec { return &mitogen.AgentSleepArgs{} }, func() thrift.FastCodec { return &mitogen.AgentSleepResult{} }, true},
	"read_file":     {func() thrift.FastCodec { return &mitogen.AgentReadFileArgs{} }, func() thrift.FastCodec { return &mitogen.AgentReadFileResult{} }, false},
	"start_process": {func() thrift.FastCodec { return &mitogen.AgentStartProcessArgs{} }, func() thrift.FastCodec { return &mitogen.AgentStartProcessResult{} }, false},
	"start_fakessh": {func() thrift.FastCodec { return &mitogen.AgentStartFakesshArgs{} }, func() thrift.FastCodec { return &mitogen.AgentStartFakesshResult{} }, false},
	"dial_tcp":      {func() thrift.FastCodec { return &mitogen.AgentDialTcpArgs{} }, func() thrift.FastCodec { return &mitogen.AgentDialTcpResult{} }, false},
	"listen_tcp":    {func() thrift.FastCodec { return &mitogen.AgentListenTcpArgs{} }, func() thrift.FastCodec { return &mitogen.AgentListenTcpResult{} }, false},
}

// payloadStructs are the structs a case may name as a frame's data.
var payloadStructs = map[string]func() thrift.FastCodec{
	"Dead":        func() thrift.FastCodec { return &mitogen.Dead{} },
	"RouteUpdate": func() thrift.FastCodec { return &mitogen.RouteUpdate{} },
	"Credit":      func() thrift.FastCodec { return &mitogen.Credit{} },
	"Control":     func() thrift.FastCodec { return &mitogen.Control{} },
	"Boot":        func() thrift.FastCodec { return &mitogen.Boot{} },
}

var appExceptionTypes = map[string]int32{
	"UNKNOWN": thrift.UNKNOWN_APPLICATION_EXCEPTION, "UNKNOWN_METHOD": thrift.UNKNOWN_METHOD,
	"INVALID_MESSAGE_TYPE": thrift.INVALID_MESSAGE_TYPE_EXCEPTION, "WRONG_METHOD_NAME": thrift.WRONG_METHOD_NAME,
	"BAD_SEQUENCE_ID": thrift.BAD_SEQUENCE_ID, "MISSING_RESULT": thrift.MISSING_RESULT,
	"INTERNAL_ERROR": thrift.INTERNAL_ERROR, "PROTOCOL_ERROR": thrift.PROTOCOL_ERROR,
}

func appExceptionName(t int32) string {
	for k, v := range appExceptionTypes {
		if v == t {
			return k
		}
	}
	return strconv.Itoa(int(t))
}

// ---- the stream to the agent ----

type session struct {
	cmd      *exec.Cmd
	stderr   *capped
	frames   chan wire.Message
	readErr  error // set before frames is closed
	writes   chan []byte
	wrote    chan struct{} // closed when the writer goroutine is done
	deadline time.Time

	next     int32
	queues   map[int32][]wire.Message
	logs     []string
	warnings []string
	strays   []string
	seq      int32
}

// capped keeps the last 4 KiB written to it.
type capped struct {
	mu sync.Mutex
	b  []byte
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.b = append(c.b, p...)
	if len(c.b) > 4096 {
		c.b = c.b[len(c.b)-4096:]
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.b)
}

func startSession(agent string, timeout time.Duration) (*session, error) {
	s := &session{
		cmd:      exec.Command(agent, "agent"),
		stderr:   &capped{},
		frames:   make(chan wire.Message, 1<<16),
		writes:   make(chan []byte, 1<<16),
		wrote:    make(chan struct{}),
		deadline: time.Now().Add(timeout),
		next:     mitogen.FIRST_DYNAMIC_HANDLE,
		queues:   map[int32][]wire.Message{},
	}
	s.cmd.Stderr = s.stderr
	in, err := s.cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		br := bufio.NewReaderSize(out, 1<<20)
		for {
			m, err := wire.ReadFrame(br, caseMaxFrame)
			if err != nil {
				s.readErr = err
				close(s.frames)
				return
			}
			s.frames <- m
		}
	}()
	go func() {
		defer close(s.wrote)
		var werr error
		for b := range s.writes {
			if werr == nil {
				_, werr = in.Write(b)
			}
		}
		in.Close()
	}()
	return s, nil
}

func (s *session) send(m *wire.Message) error {
	t := time.NewTimer(time.Until(s.deadline))
	defer t.Stop()
	select {
	case s.writes <- wire.Encode(m):
		return nil
	case <-t.C:
		return errors.New("timed out writing to the agent")
	}
}

func (s *session) recv() (wire.Message, error) {
	t := time.NewTimer(time.Until(s.deadline))
	defer t.Stop()
	select {
	case m, ok := <-s.frames:
		if !ok {
			return m, fmt.Errorf("the agent's stdout ended (it exited?): %v", s.readErr)
		}
		return m, nil
	case <-t.C:
		return wire.Message{}, errors.New("timed out waiting for the agent")
	}
}

// close sends SHUTDOWN, the clean end of a context: the agent must close
// its end of the stream and exit with status 0.
func (s *session) close() string {
	s.deadline = time.Now().Add(15 * time.Second)
	_ = s.sendTo(mitogen.SHUTDOWN, 0, nil) // if the agent is gone already, its exit status tells
	t := time.NewTimer(15 * time.Second)
	defer t.Stop()
	eof := make(chan struct{})
	go func() {
		for range s.frames {
		}
		close(eof)
	}()
	select {
	case <-eof:
	case <-t.C:
	}
	close(s.writes)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		<-s.wrote
		if err != nil {
			return fmt.Sprintf("agent ended with %v after SHUTDOWN", err)
		}
		return ""
	case <-t.C:
		_ = s.cmd.Process.Kill() // our own child, by PID
		<-done
		<-s.wrote
		return "agent did not exit within 15s of SHUTDOWN (killed)"
	}
}

// poll returns the next frame if one arrives within d, else ok == false.
func (s *session) poll(d time.Duration) (m wire.Message, ok bool, err error) {
	if time.Now().After(s.deadline) {
		return m, false, errors.New("timed out waiting for the agent")
	}
	t := time.NewTimer(min(d, time.Until(s.deadline)))
	defer t.Stop()
	select {
	case m, open := <-s.frames:
		if !open {
			return m, false, fmt.Errorf("the agent's stdout ended (it exited?): %v", s.readErr)
		}
		return m, true, nil
	case <-t.C:
		return m, false, nil
	}
}

// processGone tells whether process pid has exited (a zombie counts: it
// awaits its reaper).
func processGone(pid int32) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) == 0 || f[0] != "Z" {
		return false
	}
	// A zombie leader may still have threads exiting, which hold the
	// process's descriptors (a SIGKILLed master's listening socket) until
	// the last one is gone.
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	return err != nil || len(tasks) <= 1
}

// refused checks a START that must be refused: the process is ended and
// nothing, not even EXIT, goes to the handles START named; the agent
// lives on.
func (s *session) refused(ps *mitogen.ProcessStarted, readers map[int32]*outReader, hCtl, hCred int32) error {
	end := thrift.FastMarshal(&mitogen.Dead{Reason: mitogen.DeadReason_SENDER_CLOSED, Message: "end of stdin"})
	if err := s.sendTo(ps.Stdin.Handle, mitogen.IS_DEAD, end); err != nil {
		return err
	}
	var problems []string
	take := func(m wire.Message) {
		r := readers[m.Handle]
		switch {
		case m.Dst == mitogen.MASTER_ID && (r != nil || m.Handle == hCtl):
			what, text := "control", m.String()
			if r != nil {
				what = r.name
			}
			var c mitogen.Control
			if m.Handle == hCtl && !m.IsDead() && func() bool { _, err := c.FastRead(m.Data); return err == nil }() {
				text = fmt.Sprintf("Control kind %v status %d note %q", c.Kind, c.ExitStatus, c.Note)
			}
			problems = append(problems, fmt.Sprintf("START must be refused, but its %s handle got %s", what, text))
		case m.Dst == mitogen.MASTER_ID && m.Handle == hCred: // the stdin stream may be ended or refused
		default:
			s.dispatch(m)
		}
	}
	for !processGone(ps.Pid) {
		m, ok, err := s.poll(50 * time.Millisecond)
		if err != nil {
			return fmt.Errorf("%v; the process (pid %d) is still running: a refused START ends it; %s", err, ps.Pid, strings.Join(problems, "; "))
		}
		if ok {
			take(m)
		}
	}
	// A round trip: whatever the agent sent before it has arrived.
	if o, err := s.call(&step{Method: "Agent:ping"}); err != nil || o.kind != "returns" {
		problems = append(problems, fmt.Sprintf("no REPLY to ping after the refused START: %v %v", o, err))
	}
	for h := range readers {
		for _, m := range s.queues[h] {
			take(m)
		}
		s.queues[h] = nil
	}
	for _, m := range s.queues[hCtl] {
		take(m)
	}
	s.queues[hCtl] = nil
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// warnLevel is slog's WARN: a quiet case fails on a FORWARD_LOG at or above it.
const warnLevel = 4

func (s *session) diagnostics() string {
	var b strings.Builder
	for _, l := range s.logs[max(0, len(s.logs)-8):] {
		fmt.Fprintf(&b, "\n    agent log: %s", l)
	}
	lines := strings.Split(strings.TrimSpace(s.stderr.String()), "\n")
	for _, l := range lines[max(0, len(lines)-10):] {
		if l != "" {
			fmt.Fprintf(&b, "\n    agent stderr: %s", l)
		}
	}
	return b.String()
}

func (s *session) alloc() int32 {
	h := s.next
	s.next++
	s.queues[h] = nil
	return h
}

func (s *session) sendTo(handle, replyTo int32, data []byte) error {
	return s.send(&wire.Message{Dst: caseAgentID, Src: mitogen.MASTER_ID, Auth: mitogen.MASTER_ID, Handle: handle, ReplyTo: replyTo, Data: data})
}

func (s *session) dispatch(m wire.Message) {
	switch q, mine := s.queues[m.Handle]; {
	case m.Dst != mitogen.MASTER_ID:
		s.strays = append(s.strays, fmt.Sprintf("frame for context %d: %s", m.Dst, m.String()))
	case m.Handle == mitogen.FORWARD_LOG:
		var rec mitogen.LogRecord
		if _, err := rec.FastRead(m.Data); err != nil {
			s.strays = append(s.strays, fmt.Sprintf("malformed FORWARD_LOG (%v)", err))
			return
		}
		var attrs []string
		for _, a := range rec.Attrs {
			if a != nil {
				attrs = append(attrs, a.Key+"="+a.Value)
			}
		}
		s.logs = append(s.logs, fmt.Sprintf("agent log level %d: %s %s", rec.Level, rec.Message, strings.Join(attrs, " ")))
		if rec.Level >= warnLevel {
			s.warnings = append(s.warnings, s.logs[len(s.logs)-1])
		}
	case mine:
		s.queues[m.Handle] = append(q, m)
	default:
		s.strays = append(s.strays, fmt.Sprintf("frame for handle %d, which this master never gave out: %s", m.Handle, m.String()))
	}
}

func (s *session) wait(h int32) (wire.Message, error) {
	for len(s.queues[h]) == 0 {
		m, err := s.recv()
		if err != nil {
			return m, err
		}
		s.dispatch(m)
	}
	m := s.queues[h][0]
	s.queues[h] = s.queues[h][1:]
	return m, nil
}

func (s *session) boot() error {
	h := s.alloc()
	boot := &mitogen.Boot{ContextId: caseAgentID, ParentId: mitogen.MASTER_ID, ParentIds: []int32{mitogen.MASTER_ID}, Name: "go-runner", LogLevel: 4, MaxFrameSize: caseMaxFrame}
	if err := s.sendTo(mitogen.BOOTSTRAP, h, thrift.FastMarshal(boot)); err != nil {
		return err
	}
	m, err := s.wait(h)
	if err != nil {
		return fmt.Errorf("waiting for Ready: %w", err)
	}
	var r mitogen.Ready
	if _, err := r.FastRead(m.Data); err != nil || r.ContextId != caseAgentID {
		return fmt.Errorf("bad Ready %v (%v)", &r, err)
	}
	return nil
}

func (s *session) resolve(v any, ctx map[string]int32) (int32, error) {
	switch x := v.(type) {
	case float64:
		return int32(x), nil
	case string:
		if x == "agent" {
			return caseAgentID, nil
		}
		if h, ok := ctx[x]; ok {
			return h, nil
		}
	}
	return 0, fmt.Errorf("case error: unknown value %v", v)
}

func (s *session) frameFrom(spec map[string]any, ctx map[string]int32) (*wire.Message, error) {
	m := &wire.Message{Dst: caseAgentID}
	for k, p := range map[string]*int32{"dst_id": &m.Dst, "src_id": &m.Src, "auth_id": &m.Auth, "handle": &m.Handle, "reply_to": &m.ReplyTo} {
		if v, ok := spec[k]; ok {
			x, err := s.resolve(v, ctx)
			if err != nil {
				return nil, err
			}
			*p = x
		}
	}
	for k := range spec {
		if !slices.Contains([]string{"dst_id", "src_id", "auth_id", "handle", "reply_to", "data"}, k) {
			return nil, fmt.Errorf("case error: frame has no field %q", k)
		}
	}
	d, _ := spec["data"].(map[string]any)
	switch {
	case d == nil:
	case d["struct"] != nil:
		mk := payloadStructs[fmt.Sprint(d["struct"])]
		if mk == nil {
			return nil, fmt.Errorf("case error: unknown struct %v", d["struct"])
		}
		v := mk()
		val := d["value"]
		if val == nil {
			val = map[string]any{}
		}
		if err := fill(val, v); err != nil {
			return nil, err
		}
		m.Data = thrift.FastMarshal(v)
	default:
		bs, err := asByteSpec(d)
		if err != nil {
			return nil, err
		}
		if m.Data, err = bs.bytes(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// outcome is a reply as a stock client reports it.
type outcome struct {
	kind  string // returns, throws, exception, dead
	value any    // returns: the result; throws: *mitogen.CallError
	app   *thrift.ApplicationException
	dead  *mitogen.Dead
}

func (o outcome) String() string {
	switch o.kind {
	case "dead":
		return fmt.Sprintf("a dead message Dead{%v: %s}", o.dead.Reason, o.dead.Message)
	case "exception":
		return fmt.Sprintf("EXCEPTION %s: %s", appExceptionName(o.app.TypeID()), o.app.Msg())
	case "throws":
		return fmt.Sprintf("declared exception %v", o.value)
	}
	if b, ok := o.value.([]byte); ok {
		return "REPLY " + show(b, 80)
	}
	return fmt.Sprintf("REPLY %v", o.value)
}

// call sends one CALL_FUNCTION and decodes the reply.
func (s *session) call(st *step) (outcome, error) {
	service, bare, found := strings.Cut(st.Method, ":")
	if !found {
		bare = service
	}
	s.seq++
	seq := s.seq
	checkSeq := true
	var data []byte
	head := func() []byte {
		b := make([]byte, thrift.Binary.MessageBeginLength(st.Method))
		thrift.Binary.WriteMessageBegin(b, st.Method, thrift.CALL, seq)
		return b
	}
	am, known := agentMethods[bare]
	switch {
	case st.PayloadRaw != nil:
		var err error
		if data, err = st.PayloadRaw.bytes(); err != nil {
			return outcome{}, err
		}
		checkSeq = false
	case st.ArgsRaw != nil:
		raw, err := st.ArgsRaw.bytes()
		if err != nil {
			return outcome{}, err
		}
		data = append(head(), raw...)
	default:
		if service != "Agent" || !known {
			return outcome{}, fmt.Errorf("case error: %s is not an Agent method this runner knows", st.Method)
		}
		args := am.args()
		if len(st.Args) > 0 {
			var raw any
			_ = json.Unmarshal(st.Args, &raw)
			if err := fill(raw, args); err != nil {
				return outcome{}, err
			}
		}
		data = append(head(), thrift.FastMarshal(args)...)
	}
	h := s.alloc()
	m := &wire.Message{Dst: caseAgentID, Handle: mitogen.CALL_FUNCTION, ReplyTo: h, Data: data}
	for k, v := range st.Frame {
		x, err := s.resolve(v, nil)
		if err != nil {
			return outcome{}, err
		}
		switch k {
		case "dst_id":
			m.Dst = x
		case "src_id":
			m.Src = x
		case "auth_id":
			m.Auth = x
		case "reply_to":
			m.ReplyTo = x
		default:
			return outcome{}, fmt.Errorf("case error: call frame field %q", k)
		}
	}
	if err := s.send(m); err != nil {
		return outcome{}, err
	}
	reply, err := s.wait(h)
	if err != nil {
		return outcome{}, err
	}
	if reply.IsDead() {
		var d mitogen.Dead
		if _, err := d.FastRead(reply.Data); err != nil {
			return outcome{}, fmt.Errorf("malformed Dead: %w", err)
		}
		return outcome{kind: "dead", dead: &d}, nil
	}
	name, typ, rseq, n, err := thrift.Binary.ReadMessageBegin(reply.Data)
	if err != nil {
		return outcome{}, fmt.Errorf("reply is not a Thrift message: %v (%s)", err, show(reply.Data, 60))
	}
	if checkSeq && rseq != seq {
		return outcome{}, fmt.Errorf("reply seqid %d, want the call's %d", rseq, seq)
	}
	body := reply.Data[n:]
	switch typ {
	case thrift.EXCEPTION:
		x := thrift.NewApplicationException(0, "")
		if _, err := x.FastRead(body); err != nil {
			return outcome{}, fmt.Errorf("malformed EXCEPTION: %w", err)
		}
		return outcome{kind: "exception", app: x}, nil
	case thrift.REPLY:
	default:
		return outcome{}, fmt.Errorf("reply message type %d, want REPLY or EXCEPTION", typ)
	}
	// Stock clients dispatch a reply by its method name: recv_<name>.
	rm, ok := agentMethods[name]
	if !ok || name != bare {
		return outcome{}, fmt.Errorf("REPLY names method %q: a stock client has no recv_%s (replies carry the bare method name %q)", name, name, bare)
	}
	present, err := fieldIDs(body)
	if err != nil {
		return outcome{}, fmt.Errorf("malformed %s result: %w", name, err)
	}
	res := rm.result()
	if _, err := res.FastRead(body); err != nil {
		return outcome{}, fmt.Errorf("malformed %s result: %w", name, err)
	}
	switch r := res.(type) {
	case *mitogen.AgentEchoResult:
		if present[0] {
			return outcome{kind: "returns", value: r.Success}, nil
		}
	case *mitogen.AgentReadFileResult:
		if present[1] {
			return outcome{kind: "throws", value: r.Err}, nil
		}
		if present[0] {
			return outcome{kind: "returns", value: r.Success}, nil
		}
	case *mitogen.AgentStartProcessResult:
		if present[1] {
			return outcome{kind: "throws", value: r.Err}, nil
		}
		if present[0] {
			return outcome{kind: "returns", value: r.Success}, nil
		}
	case *mitogen.AgentListenTcpResult:
		if present[1] {
			return outcome{kind: "throws", value: r.Err}, nil
		}
		if present[0] {
			return outcome{kind: "returns", value: r.Success}, nil
		}
	case *mitogen.AgentDialTcpResult:
		if present[1] {
			return outcome{kind: "throws", value: r.Err}, nil
		}
		if present[0] {
			return outcome{kind: "returns", value: r.Success}, nil
		}
	case *mitogen.AgentStartFakesshResult:
		if present[1] {
			return outcome{kind: "throws", value: r.Err}, nil
		}
		if present[0] {
			return outcome{kind: "returns", value: r.Success}, nil
		}
	default:
		if rm.void {
			return outcome{kind: "returns"}, nil
		}
	}
	return outcome{kind: "exception", app: thrift.NewApplicationException(thrift.MISSING_RESULT, name+" failed: unknown result")}, nil
}

// fieldIDs lists the field IDs present in a struct's encoding.
func fieldIDs(b []byte) (map[int16]bool, error) {
	ids := map[int16]bool{}
	off := 0
	for {
		t, id, n, err := thrift.Binary.ReadFieldBegin(b[off:])
		if err != nil {
			return nil, err
		}
		off += n
		if t == thrift.STOP {
			return ids, nil
		}
		ids[id] = true
		n, err = thrift.Binary.Skip(b[off:], t)
		if err != nil {
			return nil, err
		}
		off += n
	}
}

func (s *session) stepCall(st *step) error {
	o, err := s.call(st)
	if err != nil {
		return err
	}
	e := st.Expect
	switch {
	case e.Dead != "":
		want, err := mitogen.DeadReasonFromString(e.Dead)
		if err != nil {
			return fmt.Errorf("case error: %w", err)
		}
		if o.kind != "dead" || o.dead.Reason != want {
			return fmt.Errorf("%s: want a dead message Dead{%s}, got %s", st.Method, e.Dead, o)
		}
	case e.Exception != "":
		want, ok := appExceptionTypes[e.Exception]
		if !ok {
			return fmt.Errorf("case error: exception type %q", e.Exception)
		}
		if o.kind != "exception" || o.app.TypeID() != want {
			return fmt.Errorf("%s: want EXCEPTION %s, got %s", st.Method, e.Exception, o)
		}
	case e.Throws != nil:
		if o.kind != "throws" {
			return fmt.Errorf("%s: want declared exception %v, got %s", st.Method, e.Throws, o)
		}
		if d := match(e.Throws, o.value, "exception"); len(d) > 0 {
			return fmt.Errorf("%s: %s", st.Method, strings.Join(d, "; "))
		}
	case e.Returns != nil:
		if o.kind != "returns" {
			return fmt.Errorf("%s: want a REPLY, got %s", st.Method, o)
		}
		var want any
		_ = json.Unmarshal(e.Returns, &want)
		if d := match(want, o.value, "result"); len(d) > 0 {
			return fmt.Errorf("%s: %s", st.Method, strings.Join(d, "; "))
		}
	default:
		return errors.New("case error: call step expects nothing")
	}
	return nil
}

func (s *session) stepSend(st *step) error {
	m, err := s.frameFrom(st.Frame, nil)
	if err != nil {
		return err
	}
	return s.send(m)
}

// outReader is the runner's end of one of the process's output streams.
type outReader struct {
	name          string
	granted, used int64
	total         int
	sum           interface {
		io.Writer
		Sum([]byte) []byte
	}
	head  []byte
	ended bool
}

func newOutReader(name string, window int64) *outReader {
	return &outReader{name: name, granted: window, sum: sha256.New()}
}

// take accounts for one frame and returns the credit to grant back.
func (r *outReader) take(m wire.Message, problems *[]string) int64 {
	if r.ended {
		*problems = append(*problems, fmt.Sprintf("%s: frame after the end of the stream: %s", r.name, m.String()))
		return 0
	}
	if m.IsDead() {
		r.ended = true
		var d mitogen.Dead
		if _, err := d.FastRead(m.Data); err != nil || d.Reason != mitogen.DeadReason_SENDER_CLOSED {
			*problems = append(*problems, fmt.Sprintf("%s ended with Dead{%v: %s} (%v)", r.name, d.Reason, d.Message, err))
		}
		return 0
	}
	if len(m.Data) == 0 {
		*problems = append(*problems, r.name+": empty chunk (chunks are never empty)")
	}
	if m.ReplyTo == 0 {
		*problems = append(*problems, r.name+": chunk without the writer's credit handle in reply_to")
	}
	cost := int64(len(m.Data)) + chunkOverhead
	r.used += cost
	if r.used > r.granted {
		*problems = append(*problems, fmt.Sprintf("%s: writer exceeded its credit (%d > %d)", r.name, r.used, r.granted))
	}
	r.total += len(m.Data)
	r.sum.Write(m.Data)
	if len(r.head) < 256 {
		r.head = append(r.head, m.Data[:min(len(m.Data), 256)]...)
	}
	r.granted += cost
	if m.ReplyTo == 0 {
		return 0
	}
	return cost
}

func (r *outReader) check(spec *byteSpec) []string {
	want, n, err := spec.digest()
	if err != nil {
		return []string{err.Error()}
	}
	got := hex.EncodeToString(r.sum.Sum(nil))
	if got == want && n == r.total {
		return nil
	}
	return []string{fmt.Sprintf("%s: want %d bytes (sha256 %.16s), got %d bytes (sha256 %.16s) starting %s", r.name, n, want, r.total, got, show(r.head, 40))}
}

func (s *session) stepProcess(st *step) error {
	var spec any
	_ = json.Unmarshal(st.Spec, &spec)
	args, _ := json.Marshal(map[string]any{"spec": spec})
	o, err := s.call(&step{Method: "Agent:start_process", Args: args})
	if err != nil {
		return err
	}
	ps, ok := o.value.(*mitogen.ProcessStarted)
	if o.kind != "returns" || !ok || ps == nil || ps.Stdin == nil {
		return fmt.Errorf("start_process: want ProcessStarted, got %s", o)
	}
	e := st.Expect
	var stdin []byte
	if st.Stdin != nil {
		if stdin, err = st.Stdin.bytes(); err != nil {
			return err
		}
	}
	chunkMax := int64(st.StdinChunk)
	if chunkMax == 0 {
		chunkMax = 256 << 10
	}
	mode := st.StdinMode
	if mode == "" {
		mode = "credit"
	}
	hOut, hErr, hCred, hCtl := s.alloc(), s.alloc(), s.alloc(), s.alloc()
	window := func(w int64) int64 {
		if w == 0 {
			return caseDefaultWindow
		}
		return w
	}
	start := &mitogen.Control{
		Kind:          mitogen.ControlKind_START,
		Stdout:        &mitogen.StreamEnd{ContextId: mitogen.MASTER_ID, Handle: hOut, Window: window(st.StdoutWindow)},
		Stderr:        &mitogen.StreamEnd{ContextId: mitogen.MASTER_ID, Handle: hErr, Window: window(st.StderrWindow)},
		StdinCredit:   &mitogen.StreamEnd{ContextId: mitogen.MASTER_ID, Handle: hCred},
		ControlHandle: hCtl,
	}
	ctx := map[string]int32{"stdin": ps.Stdin.Handle, "control": ps.ControlHandle}
	for end, fields := range st.Start {
		se := map[string]*mitogen.StreamEnd{"stdout": start.Stdout, "stderr": start.Stderr, "stdin_credit": start.StdinCredit}[end]
		if se == nil {
			return fmt.Errorf("case error: START has no stream end %q", end)
		}
		for k, v := range fields {
			x, err := s.resolve(v, ctx)
			if err != nil {
				return err
			}
			switch k {
			case "context_id":
				se.ContextId = x
			case "handle":
				se.Handle = x
			case "window":
				se.Window = int64(x)
			default:
				return fmt.Errorf("case error: StreamEnd has no field %q", k)
			}
		}
	}
	if err := s.sendTo(ps.ControlHandle, 0, thrift.FastMarshal(start)); err != nil {
		return err
	}
	readers := map[int32]*outReader{hOut: newOutReader("stdout", start.Stdout.Window), hErr: newOutReader("stderr", start.Stderr.Window)}
	var problems []string
	credit := ps.Stdin.Window
	sent := 0
	stdinDone := false
	stdinDead := ""
	injects := slices.Clone(st.Inject)
	var exit *mitogen.Control
	ctlDead := ""
	sendChunk := func(b []byte) error { return s.sendTo(ps.Stdin.Handle, hCred, b) }
	fireInjects := func(upto int) error {
		for len(injects) > 0 && injects[0].AfterStdinBytes <= upto {
			m, err := s.frameFrom(injects[0].Frame, ctx)
			if err != nil {
				return err
			}
			injects = injects[1:]
			if err := s.send(m); err != nil {
				return err
			}
		}
		return nil
	}
	if mode == "overrun" {
		if err := sendChunk(bytes.Repeat([]byte("x"), int(ps.Stdin.Window-chunkOverhead+1))); err != nil { // costs window + 1
			return err
		}
	}
	if e.Refused {
		return s.refused(ps, readers, hCtl, hCred)
	}
	for exit == nil && ctlDead == "" {
		for mode == "credit" && !stdinDone && stdinDead == "" {
			if err := fireInjects(sent); err != nil {
				return err
			}
			if sent == len(stdin) || credit <= chunkOverhead {
				break
			}
			n := min(chunkMax, credit-chunkOverhead, int64(len(stdin)-sent))
			if err := sendChunk(stdin[sent : sent+int(n)]); err != nil {
				return err
			}
			credit -= n + chunkOverhead
			sent += int(n)
		}
		if !stdinDone && stdinDead == "" && (mode != "credit" || sent == len(stdin)) {
			if err := fireInjects(sent); err != nil {
				return err
			}
			end := thrift.FastMarshal(&mitogen.Dead{Reason: mitogen.DeadReason_SENDER_CLOSED, Message: "end of stdin"})
			if err := s.sendTo(ps.Stdin.Handle, mitogen.IS_DEAD, end); err != nil {
				return err
			}
			stdinDone = true
		}
		m, err := s.recv()
		if err != nil {
			return err
		}
		r := readers[m.Handle]
		switch {
		case m.Dst != mitogen.MASTER_ID:
			s.dispatch(m)
		case m.Handle == hCred:
			if m.IsDead() {
				var d mitogen.Dead
				_, _ = d.FastRead(m.Data)
				stdinDead = fmt.Sprintf("Dead{%v: %s}", d.Reason, d.Message)
				break
			}
			var c mitogen.Credit
			if _, err := c.FastRead(m.Data); err != nil || c.Bytes <= 0 {
				problems = append(problems, fmt.Sprintf("Credit of %d bytes (%v)", c.Bytes, err))
				break
			}
			credit += c.Bytes
		case r != nil:
			if grant := r.take(m, &problems); grant > 0 {
				if err := s.send(&wire.Message{Dst: m.Src, Handle: m.ReplyTo, Data: thrift.FastMarshal(&mitogen.Credit{Bytes: grant})}); err != nil {
					return err
				}
			}
		case m.Handle == hCtl:
			if m.IsDead() {
				var d mitogen.Dead
				_, _ = d.FastRead(m.Data)
				ctlDead = fmt.Sprintf("Dead{%v: %s}", d.Reason, d.Message)
				break
			}
			var c mitogen.Control
			if _, err := c.FastRead(m.Data); err != nil || c.Kind != mitogen.ControlKind_EXIT {
				problems = append(problems, fmt.Sprintf("control message %v (%v), want EXIT", &c, err))
				break
			}
			exit = &c
			for _, r := range []*outReader{readers[hOut], readers[hErr]} {
				if !r.ended {
					problems = append(problems, "EXIT arrived before "+r.name+" ended")
				}
			}
		default:
			s.dispatch(m)
		}
	}
	exitText := "control handle got " + ctlDead
	if exit != nil {
		exitText = fmt.Sprintf("EXIT status %d signal %q note %q", exit.ExitStatus, exit.Signal, exit.Note)
	}
	if exit == nil {
		return errors.New("no EXIT: " + exitText)
	}
	if e.Stdout != nil {
		problems = append(problems, readers[hOut].check(e.Stdout)...)
	}
	if e.Stderr != nil {
		problems = append(problems, readers[hErr].check(e.Stderr)...)
	}
	if e.ExitStatus != nil && exit.ExitStatus != *e.ExitStatus {
		problems = append(problems, fmt.Sprintf("want exit status %d, got %s", *e.ExitStatus, exitText))
	}
	if e.Exit == "error" && exit.ExitStatus == 0 && exit.Note == "" {
		problems = append(problems, "the stream error must show in EXIT (nonzero status or a note), got "+exitText)
	}
	if stdinDead != "" && mode == "credit" && sent < len(stdin) {
		problems = append(problems, fmt.Sprintf("stdin ended by the agent after %d of %d bytes: %s", sent, len(stdin), stdinDead))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// runCase runs one case against a fresh agent; "" means it passed.
func runCase(agent string, c confCase) (problem, diagnostics string) {
	timeout := caseDefaultTime
	if c.TimeoutS > 0 {
		timeout = time.Duration(c.TimeoutS * float64(time.Second))
	}
	s, err := startSession(agent, timeout)
	if err != nil {
		return "starting the agent: " + err.Error(), ""
	}
	err = s.boot()
	for i := range c.Steps {
		if err != nil {
			break
		}
		st := &c.Steps[i]
		switch st.Op {
		case "call":
			err = s.stepCall(st)
		case "send":
			err = s.stepSend(st)
		case "process":
			err = s.stepProcess(st)
		default:
			err = fmt.Errorf("case error: unknown op %q", st.Op)
		}
		if err != nil {
			err = fmt.Errorf("step %d (%s): %w", i+1, st.Op, err)
		}
	}
	if err == nil && len(s.strays) > 0 {
		err = errors.New("unexpected frames: " + strings.Join(s.strays[:min(5, len(s.strays))], "; "))
	}
	closing := s.close()
	if err != nil {
		return err.Error(), s.diagnostics()
	}
	// Checked after close, which reads every frame up to the agent's exit.
	if closing == "" && c.Quiet && len(s.warnings) > 0 {
		return fmt.Sprintf("the agent logged %d warnings or errors in a quiet case: %s", len(s.warnings), s.warnings[0]), s.diagnostics()
	}
	return closing, s.diagnostics()
}
