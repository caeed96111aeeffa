package core

// HoldsID reports whether the master granted id to this context itself
// (so that it may start a child with it). For tests.
func (r *Router) HoldsID(id int32) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.grantedLocked(nil, id)
}

// QueuedFor reports the bytes queued for writing on the stream that leads
// to dst (-1 with no such stream). For tests.
func (r *Router) QueuedFor(dst int32) int {
	r.mu.Lock()
	s := r.routes[dst]
	r.mu.Unlock()
	if s == nil {
		return -1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queued
}

// ServingCalls reports how many calls this context is serving. For tests.
func (r *Router) ServingCalls() int { return len(r.calls) }
