#!/usr/bin/env bash
# make bench: measures mitogen-go beside Python mitogen and the raw pipe
# limits in one run and prints the README's table.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/mitogen-bench ./cmd/mitogen-bench
./bin/mitogen-bench -anchor bench/mitogen_anchor.py "$@"
bash scripts/bench-ssh.sh
