package fakessh

import (
	"reflect"
	"testing"
)

func TestProgramArgs(t *testing.T) {
	cases := []struct{ in, want []string }{
		{[]string{"rsync", "-a", "x", "h:y"}, []string{"rsync", "-a", "x", "h:y"}},
		{[]string{"scp", "-q", "a", "h:b"}, []string{"scp", "-S", "/s", "-q", "a", "h:b"}},
		{[]string{"scp", "-oStrictHostKeyChecking=no", "a", "h:b"}, []string{"scp", "-S", "/s", "-oStrictHostKeyChecking=no", "a", "h:b"}},
		{[]string{"scp", "-S", "myssh", "a", "h:b"}, []string{"scp", "-S", "myssh", "a", "h:b"}},
		{[]string{"/usr/bin/sftp", "-b", "S", "h"}, []string{"/usr/bin/sftp", "-S", "/s", "-b", "S", "h"}},
		{[]string{"sftp", "-qS", "x", "h"}, []string{"sftp", "-qS", "x", "h"}},
	}
	for _, c := range cases {
		if got := programArgs(c.in, "/s"); !reflect.DeepEqual(got, c.want) {
			t.Errorf("programArgs(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
