// Containers of every shape, for the bounded-decoding test of mitogen-gen.
namespace go nested

enum Color { RED = 1 }

typedef list<string> Names

struct Leaf { 1: i32 x }

struct Tree {
  1: set<string> tags
  2: list<list<i32>> grid
  3: map<string, list<Leaf>> forest
  4: map<i64, set<Color>> colors
  5: list<map<string, binary>> blobs
  6: Names names
  7: list<bool> flags
  8: map<Leaf, double> weights
}

service S {
  list<string> get(1: map<i16, byte> q)
}
