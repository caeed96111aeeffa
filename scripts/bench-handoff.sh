#!/usr/bin/env bash
# rsync --whole-file of SIZE_MIB MiB through fakessh `--via local` with FD
# HANDOFF (the default), through fakessh with the relay
# (MITOGEN_FAKESSH_HANDOFF=0), and through a local-exec "remote shell" (the
# limit), alternated, REPS times each; prints every timing and the medians
# with their ratios to local-exec. Runs with HOME set to an empty
# directory so that the remote command's shell (run as sshd would, with
# the user's login files) reads no rc files: the local-exec shell reads
# none either. BENCH_DIR holds the files (default /tmp; /dev/shm takes
# the disk out).
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/mitogen ./cmd/mitogen
MITOGEN=$PWD/bin/mitogen
SIZE_MIB=${SIZE_MIB:-1024}
REPS=${REPS:-5}
w=$(mktemp -d "${BENCH_DIR:-/tmp}/mitogen-bench-handoff.XXXXXX")
trap 'rm -rf "$w"' EXIT
mkdir -p "$w/src" "$w/home"
export HOME=$w/home MITOGEN_PERSIST=no
head -c $((SIZE_MIB << 20)) /dev/urandom > "$w/src/data.bin"
printf '#!/bin/sh\n# a "remote shell" that runs the command here\nshift\nexec "$@"\n' > "$w/lexec"
chmod +x "$w/lexec"
now() { date +%s%N; }
one() {
  rm -rf "$w/dst"; mkdir "$w/dst"; sync
  local t0; t0=$(now)
  "$@" >/dev/null
  local t=$(( $(now) - t0 ))
  cmp -s "$w/src/data.bin" "$w/dst/data.bin" || { echo "bench: copy differs for: $*" >&2; exit 1; }
  echo "$t"
}
R=(rsync -a --whole-file)
L=() F=() N=()
for _ in $(seq "$REPS"); do
  L+=("$(one "${R[@]}" -e "$w/lexec" "$w/src/" "x:$w/dst/")")
  F+=("$(one "$MITOGEN" run --via local -- "${R[@]}" "$w/src/" "x:$w/dst/")")
  N+=("$(MITOGEN_FAKESSH_HANDOFF=0 one "$MITOGEN" run --via local -- "${R[@]}" "$w/src/" "x:$w/dst/")")
done
med() { printf '%s\n' "$@" | sort -n | sed -n "$(( (REPS + 1) / 2 ))p" | awk '{printf "%.3f", $1/1e9}'; }
l=$(med "${L[@]}") f=$(med "${F[@]}") n=$(med "${N[@]}")
echo "local-exec ns: ${L[*]}"
echo "handoff ns:    ${F[*]}"
echo "relay ns:      ${N[*]}"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "| rsync --whole-file ${SIZE_MIB} MiB via fakessh (handoff) | ${f} s | local-exec shell | ${l} s | $(ratio "$f" "$l")× | ≤ 1.15× |"
echo "| rsync --whole-file ${SIZE_MIB} MiB via fakessh (relay) | ${n} s | local-exec shell | ${l} s | $(ratio "$n" "$l")× | |"
