#!/usr/bin/env bash
# make bench: measures mitogen-go beside Python mitogen and the raw pipe
# limits in one run and prints the README's table.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/mitogen-bench ./cmd/mitogen-bench
./bin/mitogen-bench -anchor bench/mitogen_anchor.py "$@"
# Kitex through a local context vs Kitex over loopback TCP (examples/kitex).
go build -o bin/kitex-example ./examples/kitex
./bin/kitex-example -bench 5000
bash scripts/bench-ssh.sh
