#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
# It installs a C linker and Rust if they are missing, builds the grader
# (here, in source/, where no submission can write), and prepares the
# submissions' build: a scratch workspace next to source/ with the lab's
# dependencies vendored and compiled once, as the unprivileged user the
# students' code is built and run as (RUN_AS in autograder.conf, default
# nobody).
set -euo pipefail
cd "$(dirname "$0")"
src=$(pwd)
root=$(dirname "$src")
. ./autograder.conf

if ! command -v cc >/dev/null; then
  apt-get update
  apt-get install -y --no-install-recommends build-essential ca-certificates
fi
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
if ! command -v cargo >/dev/null; then
  command -v curl >/dev/null || { apt-get update; apt-get install -y --no-install-recommends curl ca-certificates; }
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  . "$HOME/.cargo/env"
fi
cargo build --release -p grader
grader=${CARGO_TARGET_DIR:-$src/target}/release/grader
# The stub, built the way every submission will be: this vendors and
# compiles the dependencies once, so a submission only compiles its own code.
GRADER_RUN_AS=${RUN_AS:-nobody} "$grader" build "$LAB" "labs/$LAB" \
  --workspace "$src" --scratch "$root/build" --out "$root/build/stub"
