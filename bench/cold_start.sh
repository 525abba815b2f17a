#!/usr/bin/env bash
# Cold starts: builds every function and the hello-world baseline with the release profile
# (what Lambda runs: fat LTO, codegen-units=1, panic=abort, strip), for this machine, then
# starts each against a local Runtime API (forum-bench cold-start). Needs Java and npm for
# DynamoDB Local, like forum-local.
#
#   bash bench/cold_start.sh                 # every function, 9 cold starts each
#   RUNS=3 bash bench/cold_start.sh get-post  # some
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/forum-target}"
RUNS="${RUNS:-9}"

# Only the binaries asked for (each links with fat LTO: the whole set takes a long while).
bins=()
for b in "$@"; do bins+=(--bin "$b"); done
cargo build -q --release -p functions "${bins[@]}"
cargo build -q --release -p forum-bench --bin hello-world
cargo build -q --profile perf -p forum-bench --bin forum-bench
only=()
for b in "$@"; do only+=(--only "$b"); done
"$CARGO_TARGET_DIR/perf/forum-bench" cold-start --bin-dir "$CARGO_TARGET_DIR/release" --runs "$RUNS" "${only[@]}"
