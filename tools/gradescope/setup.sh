#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
# It installs a C linker and Rust, then builds the grader and the lab's
# dependencies so that each submission only compiles the student's code.
set -euo pipefail
cd "$(dirname "$0")"
. ./autograder.conf

if ! command -v cc >/dev/null || ! command -v curl >/dev/null; then
  apt-get update
  apt-get install -y --no-install-recommends build-essential curl ca-certificates
fi
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
if ! command -v cargo >/dev/null; then
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  . "$HOME/.cargo/env"
fi
cargo build --release -p grader -p "$LAB"
