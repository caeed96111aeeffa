package core

import "testing"

func TestFramePoolClasses(t *testing.T) {
	var p framePool
	for _, n := range []int{1, 4096, 4097, 70000, 1 << 20, 2 << 20} {
		b := p.get(n)
		if len(b) != n || cap(b)&(cap(b)-1) != 0 || cap(b) < n {
			t.Fatalf("get(%d): len %d cap %d", n, len(b), cap(b))
		}
		p.put(b)
		if again := p.get(n); len(again) != n {
			t.Fatalf("reused buffer for %d has len %d", n, len(again))
		}
	}
	big := p.get(3 << 20)
	if len(big) != 3<<20 {
		t.Fatal("large buffer")
	}
	p.put(big)                  // ignored: not a class size
	p.put(make([]byte, 0, 100)) // ignored
}
