#!/usr/bin/env bash
# make demo: rsync a generated tree through a local context with fakessh and
# show that the copy is identical.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=$work/src dst=$work/dst
mkdir -p "$src/dir with spaces/sub" "$dst"
printf 'hello\n' > "$src/dir with spaces/greeting"
head -c 5000000 /dev/urandom > "$src/dir with spaces/sub/random.bin"
: > "$src/empty"
ln -s "dir with spaces/greeting" "$src/link"
for i in $(seq 1 200); do echo "file $i" > "$src/dir with spaces/sub/f$i.txt"; done

echo "+ mitogen run --via local -- rsync -a --stats $src/ anyhost:$dst/"
./bin/mitogen run --via local -- rsync -a --stats "$src/" "anyhost:$dst/" | grep -E 'Number of (files|regular files transferred)|Total transferred file size'
echo "+ diff -r $src $dst"
if diff -r --no-dereference "$src" "$dst"; then
  echo "demo: the copy is identical ($(find "$dst" | wc -l) entries): rsync ran its remote side in a mitogen context, through fakessh, with no ssh connection."
else
  echo "demo: the copy differs" >&2
  exit 1
fi
