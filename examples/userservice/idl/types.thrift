// Types of the userservice example, in a file of their own that
// userservice.thrift includes: mitogen-gen generates them into a Go package
// of their own (gen/usertypes), which the service's package imports.
namespace go usertypes
namespace py usertypes

/** Who a context runs as, and where. */
struct Identity {
  1: i32 uid
  2: string user
  3: string host
  4: i32 pid
}

/** Lines of a text file. */
typedef list<string> Lines

/** A file the serving context could not read. */
exception Unreadable {
  1: string path
  2: string reason
}
