#!/usr/bin/env bash
# make bench: measures mitogen-go beside its anchors (Python mitogen, the
# raw pipe limits, OpenSSH, rsync with a local-exec shell) and prints the
# README's table. Every measurement is repeated REPS times with its anchor
# measured right after it; figures are medians, ratios the median of the
# per-repetition ratios.
#
# LOAD picks the conditions, each a column group of the table:
#   LOAD=both (default) quiet, then loaded; LOAD=0 quiet only; LOAD=1 loaded
#   only. "loaded" runs two busy loops (sh -c 'while :; do :; done') beside
#   the whole measurement, as a busy host would.
# Other knobs: REPS (default 5; 3 for the 1 GiB rsync rows), SIZE_MIB,
# STREAM_MIB (default 1024), and SSH=0 to skip the sshd rows.
set -euo pipefail
cd "$(dirname "$0")/.."
LOAD=${LOAD:-both}
REPS=${REPS:-5}
STREAM_MIB=${STREAM_MIB:-1024}
go build -o bin/mitogen-bench ./cmd/mitogen-bench
go build -o bin/kitex-example ./examples/kitex
out=$(mktemp -d /tmp/mitogen-bench-out.XXXXXX)
busy=()
stop_busy() {
  if [ ${#busy[@]} -gt 0 ]; then
    kill "${busy[@]}" 2>/dev/null || true
    # wait reports the loops' SIGTERM (status 143), which under set -e
    # would end this script before it printed the table
    wait "${busy[@]}" 2>/dev/null || true
  fi
  busy=()
}
# The rows are kept when the run does not finish (a long run on a busy
# machine is worth its partial figures: merge them with -table).
trap 'stop_busy; if [ "${done:-0}" = 1 ]; then rm -rf "$out"; else echo "bench: unfinished; rows so far in $out" >&2; fi' EXIT

measure() { # measure NAME: every row into $out/NAME.rows
  local f="$out/$1.rows"
  echo "bench: $1 run started $(date -u +%H:%M:%S) UTC; load average $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs" | tee -a "$out/conditions" >&2
  ./bin/mitogen-bench -anchor bench/mitogen_anchor.py -reps "$REPS" -stream-mib "$STREAM_MIB" -json "$@" > "$f"
  # Kitex through a local context vs Kitex over loopback TCP (examples/kitex).
  ./bin/kitex-example -bench 5000 >> "$f"
  if [ "${SSH:-1}" != 0 ]; then
    BENCH_JSON=1 REPS=$(( REPS < 3 ? REPS : 3 )) bash scripts/bench-ssh.sh >> "$f"
  fi
}

spec=()
case "$LOAD" in
  0|both)
    measure quiet
    spec+=("quiet=$out/quiet.rows") ;;
esac
case "$LOAD" in
  1|both)
    for _ in 1 2; do
      sh -c 'while :; do :; done' &
      busy+=($!)
    done
    measure loaded
    stop_busy
    spec+=("loaded=$out/loaded.rows") ;;
esac
[ ${#spec[@]} -gt 0 ] || { echo "bench: LOAD must be 0, 1 or both" >&2; exit 2; }
echo
echo "Conditions: $(uname -m), $(nproc) CPUs, $(date -u +%Y-%m-%d). \"loaded\": two busy loops beside the run."
sed 's/^bench: /- /' "$out/conditions"
echo
./bin/mitogen-bench -table "$(IFS=,; echo "${spec[*]}")"
done=1
