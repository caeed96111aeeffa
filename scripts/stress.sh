#!/usr/bin/env bash
# make stress: runs the whole test suite N times in a row (default 20) with
# two busy loops beside it, as a loaded machine would, and stops at the
# first failure. Prints one line per run and a summary.
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
busy=()
for _ in 1 2; do
	sh -c 'while :; do :; done' &
	busy+=($!)
done
cleanup() { kill "${busy[@]}" 2>/dev/null; wait "${busy[@]}" 2>/dev/null; }
trap cleanup EXIT
log=$(mktemp -d)/stress
mkdir -p "$log"
pass=0
start=$(date +%s)
for i in $(seq 1 "$n"); do
	t0=$(date +%s)
	if go test -race -count=1 -timeout 30m ./... >"$log/run$i.txt" 2>&1; then
		pass=$((pass + 1))
		echo "stress: run $i/$n passed in $(( $(date +%s) - t0 )) s"
	else
		echo "stress: run $i/$n FAILED in $(( $(date +%s) - t0 )) s; log: $log/run$i.txt"
		grep -E -- '^(--- FAIL|FAIL|panic)' "$log/run$i.txt" | head -20
		break
	fi
done
echo "stress: $pass/$n runs passed with two busy loops beside them, $(( $(date +%s) - start )) s in all"
[ "$pass" = "$n" ]
