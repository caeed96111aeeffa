package core

// HoldsID reports whether the master granted id to this context itself
// (so that it may start a child with it). For tests.
func (r *Router) HoldsID(id int32) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.grantedLocked(nil, id)
}
