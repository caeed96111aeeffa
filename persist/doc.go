// Package persist holds the persistent master of the mitogen CLI (the
// ControlPersist idea, for contexts): a master process that runs in the
// background, holds the chains of contexts its clients asked for, and
// serves later `mitogen exec` and `mitogen ping` runs of the same user
// over a private unix socket, so that reusing a chain costs a local
// connection instead of a new login.
//
// Server is the master's side: a 0700 directory of the user, a socket in
// it whose peers must have the master's uid (SO_PEERCRED), the
// PersistentMaster service (idl/mitogen.thrift) on a handle only its
// clients may call, chains dialed on first use and again when one of
// their contexts died, and an idle timeout. Client is the other side: it
// becomes a leaf child context of the master (as fakessh's ssh does of a
// run's master) and asks the master to start processes in a chain's last
// context, which it then drives itself with process.Relay. Ensure starts
// a master when none answers, removing the socket of one that died.
package persist
