// Types shared by catalog.thrift: an included IDL file, generated into a
// Go package of its own.
namespace go usercommon

enum Mood { CALM = 1, BUSY = 2 }

typedef list<string> Tags

struct Item {
  1: string name
  2: Tags tags
  3: Mood mood
}

exception NotFound { 1: string what }
