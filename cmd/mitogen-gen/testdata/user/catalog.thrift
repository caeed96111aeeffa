// A user's IDL for the generator tests: an include, plain i32 constants
// (not handles), and a service whose signatures use the included types.
include "common.thrift"

namespace go usersvc

const i32 MAX_RETRIES = 3
const i32 DEFAULT_TIMEOUT_MS = 250

struct Query {
  1: string prefix
  2: list<common.Item> seen
  3: map<string, common.Tags> by_tag
}

service Catalog {
  list<common.Item> find(1: Query q, 2: common.Mood mood) throws (1: common.NotFound nf)
  common.Item get(1: string name) throws (1: common.NotFound nf)
  void touch(1: common.Tags tags)
}
