// The userservice example's own service, compiled by mitogen-gen into
// gen/userservice and served by the example binary in every context it
// runs as (see ../main.go).
include "types.thrift"

namespace go userservice
namespace py userservice

/**
 * How many lines of a file describe returns at most. A plain constant:
 * only constants marked (mitogen.handle = "true") are handles, so this one
 * is not in WellKnownHandles.
 */
const i32 MAX_LINES = 100

/** What describe answers. */
struct Report {
  1: types.Identity who
  2: string greeting
  3: types.Lines lines
}

service HostInfo {
  /**
   * Says who and where the serving context is, answers the greeting, and
   * reads the first max_lines lines (at most MAX_LINES) of path, as the
   * context's user, when path is not empty.
   */
  Report describe(1: string greeting, 2: string path, 3: i32 max_lines) throws (1: types.Unreadable err)
}
