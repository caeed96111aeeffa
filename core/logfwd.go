package core

import (
	"context"
	"log/slog"
	"strings"
	"unicode/utf8"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

func levelOf(l int) slog.Level { return slog.Level(l) }

// forwardHandler is a slog.Handler that sends records to the master as
// FORWARD_LOG messages. Records are queued on a bounded channel and
// dropped (counted) when it is full, so logging never blocks the agent.
type forwardHandler struct {
	r      *Router
	level  slog.Level
	attrs  []slog.Attr
	groups []string
	q      chan *mitogen.LogRecord
}

const forwardQueue = 256

func newForwardHandler(r *Router, level slog.Level) *forwardHandler {
	h := &forwardHandler{r: r, level: level, q: make(chan *mitogen.LogRecord, forwardQueue)}
	go func() {
		for {
			select {
			case rec := <-h.q:
				r.Send(&wire.Message{Dst: mitogen.MASTER_ID, Handle: mitogen.FORWARD_LOG, Data: marshal(rec)})
			case <-r.ctx.Done():
				return
			}
		}
	}()
	return h
}

func (h *forwardHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *forwardHandler) Handle(_ context.Context, rec slog.Record) error {
	lr := &mitogen.LogRecord{TimeUnixNano: rec.Time.UnixNano(), Level: int32(rec.Level), Message: rec.Message}
	prefix := strings.Join(h.groups, ".")
	add := func(a slog.Attr) bool {
		k := a.Key
		if prefix != "" {
			k = prefix + "." + k
		}
		lr.Attrs = append(lr.Attrs, &mitogen.LogAttr{Key: k, Value: a.Value.String()})
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	rec.Attrs(add)
	fitLogRecord(lr)
	select {
	case h.q <- lr:
	default: // full: drop rather than block the caller
	}
	return nil
}

func (h *forwardHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr{}, h.attrs...), as...)
	return &c
}

func (h *forwardHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.groups = append(append([]string{}, h.groups...), name)
	return &c
}

// fitLogRecord shortens rec in place so that it encodes to at most
// MAX_LOG_RECORD bytes, the most the master accepts: the message and each
// value are cut to an eighth of that, each key to a sixty-fourth, attrs
// that no longer fit are dropped, and a shortened record ends with the attr
// log.truncated=true.
func fitLogRecord(rec *mitogen.LogRecord) {
	if rec.BLength() <= mitogen.MAX_LOG_RECORD {
		return
	}
	const maxValue, maxKey = mitogen.MAX_LOG_RECORD / 8, mitogen.MAX_LOG_RECORD / 64
	marker := &mitogen.LogAttr{Key: "log.truncated", Value: "true"}
	rec.Message = truncateUTF8(rec.Message, maxValue)
	attrs := rec.Attrs
	rec.Attrs = []*mitogen.LogAttr{marker}
	size := rec.BLength() // each further attr adds exactly its own encoding
	kept := make([]*mitogen.LogAttr, 0, min(len(attrs), 64)+1)
	for _, a := range attrs {
		if a == nil {
			continue
		}
		a = &mitogen.LogAttr{Key: truncateUTF8(a.Key, maxKey), Value: truncateUTF8(a.Value, maxValue)}
		n := a.BLength()
		if size+n > mitogen.MAX_LOG_RECORD {
			break
		}
		kept = append(kept, a)
		size += n
	}
	rec.Attrs = append(kept, marker)
}

// truncateUTF8 returns s cut to at most n bytes, not inside a UTF-8 sequence.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
