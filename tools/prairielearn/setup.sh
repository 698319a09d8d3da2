#!/usr/bin/env bash
# Run once, as root, when the grading image is built (Dockerfile):
# `setup.sh LAB...`. It builds the grader in the course's student copy
# (/iomux/course, where no submission can write) and, for each lab, builds
# the stub the way every submission will be built (`grader build`): this
# vendors the lab's dependencies and compiles them once, into
# /iomux/build/<lab>, so that a submission's build is offline and compiles
# only its own code, as the unprivileged user RUN_AS (default nobody).
#
# IOMUX_ROOT (default: this script's folder) lets the course's tests run it
# outside Docker.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: setup.sh LAB..." >&2; exit 2; }
home=${IOMUX_ROOT:-$(cd "$(dirname "$0")" && pwd)}
src=$home/course
cd "$src"
cargo build --release -p grader
grader=${CARGO_TARGET_DIR:-$src/target}/release/grader
for lab in "$@"; do
  echo "setup: preparing the build of $lab submissions"
  GRADER_RUN_AS=${RUN_AS:-nobody} "$grader" build "$lab" "labs/$lab" \
    --workspace "$src" --scratch "$home/build/$lab" --out "$home/build/$lab/stub"
done
