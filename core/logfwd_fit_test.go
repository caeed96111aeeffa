package core

import (
	"strings"
	"testing"

	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// The forwarder never sends a FORWARD_LOG larger than MAX_LOG_RECORD: a
// huge message, huge values or many attrs are cut, and the record says so.
func TestFitLogRecord(t *testing.T) {
	small := &mitogen.LogRecord{Message: "hello", Attrs: []*mitogen.LogAttr{{Key: "k", Value: "v"}}}
	fitLogRecord(small)
	if small.Message != "hello" || len(small.Attrs) != 1 {
		t.Errorf("a small record was changed: %+v", small)
	}
	many := make([]*mitogen.LogAttr, 20000)
	for i := range many {
		many[i] = &mitogen.LogAttr{Key: "key", Value: strings.Repeat("v", 100)}
	}
	for name, rec := range map[string]*mitogen.LogRecord{
		"message": {Message: strings.Repeat("m", 1<<20)},
		"value":   {Message: "m", Attrs: []*mitogen.LogAttr{{Key: strings.Repeat("k", 1<<20), Value: strings.Repeat("v", 1<<20)}}},
		"attrs":   {Message: "m", Attrs: many},
	} {
		fitLogRecord(rec)
		if n := rec.BLength(); n > mitogen.MAX_LOG_RECORD {
			t.Errorf("%s: %d bytes after fitting, more than MAX_LOG_RECORD", name, n)
		}
		if len(rec.Attrs) == 0 || rec.Attrs[len(rec.Attrs)-1].Key != "log.truncated" || rec.Attrs[len(rec.Attrs)-1].Value != "true" {
			t.Errorf("%s: a shortened record does not end with the attr log.truncated=true", name)
		}
	}
}
