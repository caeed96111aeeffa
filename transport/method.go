package transport

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
)

// Method is a connection method: how to reach a context of one kind.
type Method struct {
	// Kind is the spec's prefix ("ssh" in "ssh:host").
	Kind Kind
	// Syntax shows the spec's form, for help and errors
	// ("ssh:[user@]host[:port]").
	Syntax string
	// Summary is a one-line description.
	Summary string
	// Parse parses the spec's text after "kind:" ("" when there is none)
	// into a Spec of this Kind. Spec.String of the result must parse back
	// to the same Spec. Errors need not repeat the spec: the registry adds it.
	Parse func(arg string) (Spec, error)
	// NewOptions returns a pointer to a new zero value of the method's
	// options struct, whose fields carry `opt:"key"` tags (see
	// DecodeOptions); nil when the method takes no options. When the
	// struct has a method Validate() error, it is called after decoding
	// and before encoding.
	NewOptions func() any
	// New builds the transport for spec. opts is a value NewOptions
	// returned (decoded and validated), or nil when the method takes none.
	// agent is the agent binary to install on the far side.
	New func(spec Spec, opts any, agent *bootstrap.Agent) (Transport, error)
	// SameMachine says that the context a hop of this method starts runs
	// on the machine of the context that starts it, in its network
	// namespace (local, sudo, su, doas). The master hands a fakessh ssh's
	// descriptors (idl: FD HANDOFF) only to contexts reached from it by
	// such hops alone; false (ssh, containers, setns) is always safe.
	SameMachine bool
}

// Registry holds connection methods by kind. Its zero value is empty and
// ready to use; it is safe for concurrent use.
type Registry struct {
	mu      sync.RWMutex
	methods map[Kind]*Method
}

// Default is the registry ParseSpec uses and the built-in methods
// register themselves into when their packages are imported.
var Default = &Registry{}

// NewRegistry returns a registry holding methods.
func NewRegistry(methods ...Method) (*Registry, error) {
	r := &Registry{}
	for _, m := range methods {
		if err := r.Register(m); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds m to Default; it panics on an invalid or duplicate method
// (it is meant for init functions, where that is a programming error).
func Register(m Method) {
	if err := Default.Register(m); err != nil {
		panic(err)
	}
}

// Register adds m. A kind may be registered once.
func (r *Registry) Register(m Method) error {
	switch {
	case m.Kind == "" || strings.ContainsAny(string(m.Kind), ":, \t\n@"):
		return fmt.Errorf("registering connection method %q: a kind is a non-empty word without ':', ',', '@' or spaces", m.Kind)
	case m.Parse == nil || m.New == nil:
		return fmt.Errorf("registering connection method %q: Parse and New are required", m.Kind)
	}
	if m.NewOptions != nil {
		if _, err := optionFields(m.NewOptions()); err != nil {
			return fmt.Errorf("registering connection method %q: %w", m.Kind, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.methods[m.Kind]; dup {
		return fmt.Errorf("connection method %q is already registered", m.Kind)
	}
	if r.methods == nil {
		r.methods = map[Kind]*Method{}
	}
	r.methods[m.Kind] = &m
	return nil
}

// Kinds lists the registered kinds, sorted.
func (r *Registry) Kinds() []Kind {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Kind, 0, len(r.methods))
	for k := range r.methods {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Methods lists the registered methods, sorted by kind.
func (r *Registry) Methods() []Method {
	var out []Method
	for _, k := range r.Kinds() {
		if m, err := r.Method(k); err == nil {
			out = append(out, *m)
		}
	}
	return out
}

// Method returns the method of kind k, or an error listing the known ones.
func (r *Registry) Method(k Kind) (*Method, error) {
	r.mu.RLock()
	m := r.methods[k]
	r.mu.RUnlock()
	if m == nil {
		var known []string
		for _, k := range r.Kinds() {
			known = append(known, string(k))
		}
		if len(known) == 0 {
			return nil, fmt.Errorf("unknown connection method %q: no methods are registered (import the method packages, or package agent)", k)
		}
		return nil, fmt.Errorf("unknown connection method %q: want one of %s", k, strings.Join(known, ", "))
	}
	return m, nil
}

// SameMachine reports whether hops of kind k stay on the machine of the
// context that starts them (Method.SameMachine); false for an unknown kind.
func (r *Registry) SameMachine(k Kind) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m := r.methods[k]
	return m != nil && m.SameMachine
}

// ParseSpec parses one hop, "kind[:arg]", with the registered methods.
func (r *Registry) ParseSpec(s string) (Spec, error) {
	kind, arg, _ := strings.Cut(s, ":")
	m, err := r.Method(Kind(kind))
	if err != nil {
		return Spec{}, fmt.Errorf("hop spec %q: %w", s, err)
	}
	sp, err := m.Parse(arg)
	if err != nil {
		return Spec{}, fmt.Errorf("hop spec %q: %w (want %s)", s, err, m.Syntax)
	}
	sp.Kind = m.Kind
	return sp, nil
}

// NewOptions returns new zero options for kind (nil when it takes none).
func (r *Registry) NewOptions(kind Kind) (any, error) {
	m, err := r.Method(kind)
	if err != nil {
		return nil, err
	}
	if m.NewOptions == nil {
		return nil, nil
	}
	return m.NewOptions(), nil
}

// DecodeOptions parses and validates the options of a kind's hop from
// their wire form (ConnectRequest.options). Unknown keys are errors: a
// setting meant for another method must not be silently dropped, nor
// accepted by a method it does not belong to.
func (r *Registry) DecodeOptions(kind Kind, wire map[string]string) (any, error) {
	opts, err := r.NewOptions(kind)
	if err != nil {
		return nil, err
	}
	if opts == nil {
		for k := range wire {
			return nil, fmt.Errorf("%s hops take no options (got %q)", kind, k)
		}
		return nil, nil
	}
	if err := DecodeOptions(wire, opts); err != nil {
		return nil, fmt.Errorf("%s hop options: %w", kind, err)
	}
	return opts, nil
}

// EncodeOptions validates opts, which must be nil or of the type kind's
// NewOptions returns, and returns their wire form.
func (r *Registry) EncodeOptions(kind Kind, opts any) (map[string]string, error) {
	if isNil(opts) {
		return nil, nil
	}
	zero, err := r.NewOptions(kind)
	if err != nil {
		return nil, err
	}
	if zero == nil {
		return nil, fmt.Errorf("%s hops take no options (got %T)", kind, opts)
	}
	if reflect.TypeOf(zero) != reflect.TypeOf(opts) {
		return nil, fmt.Errorf("%s hop options must be %T, not %T", kind, zero, opts)
	}
	m, err := EncodeOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("%s hop options: %w", kind, err)
	}
	return m, nil
}

// New builds the transport of spec from its options' wire form.
func (r *Registry) New(spec Spec, wire map[string]string, agent *bootstrap.Agent) (Transport, error) {
	m, err := r.Method(spec.Kind)
	if err != nil {
		return nil, err
	}
	opts, err := r.DecodeOptions(spec.Kind, wire)
	if err != nil {
		return nil, err
	}
	t, err := m.New(spec, opts, agent)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	return t, nil
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

func errorf(format string, args ...any) error { return errors.New(fmt.Sprintf(format, args...)) }
