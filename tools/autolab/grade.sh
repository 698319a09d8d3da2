#!/usr/bin/env bash
# Autolab's autograder for one lab: the autograde-Makefile runs it, in the
# folder where Autolab put the handin, after unpacking autograde.tar there
# (iomux-labs/: the student copy of the course with its dependencies
# vendored; autolab/: this script and autolab.conf).
#
# usage: bash autolab/grade.sh HANDIN   (a tar of the lab's src/ folder)
#
# It builds the grader (offline, from iomux-labs/vendor), unpacks the handin,
# builds it without trusting it (`grader build`: only the lab's .rs files,
# with the lab's own Cargo.toml; a build script or another manifest is
# refused), grades it with `--format autolab` and exits 0 with the
# autoresult as the last line of its output, whatever happens: a handin that
# cannot be built or graded gets every check at 0 with the reason. Only when
# the grader itself cannot be built does it exit 1 (the Makefile then prints
# the zero line it carries).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
. "$here/autolab.conf" # LAB, TIMEOUT, LEADERBOARD
handin=$top/${1:?usage: grade.sh HANDIN}
course=$top/iomux-labs
work=$top/work
rm -rf "$work"
mkdir -p "$work/handin"

# Rust: the grading image's system-wide toolchain (see the guide), or one
# installed for the user. Cargo's own cache must be writable.
for bin in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
  if [ -d "$bin" ]; then PATH=$bin:$PATH; fi
done
if [ -z "${RUSTUP_HOME:-}" ] && [ -d /usr/local/rustup ]; then export RUSTUP_HOME=/usr/local/rustup; fi
if ! [ -w "${CARGO_HOME:-$HOME/.cargo}" ]; then export CARGO_HOME=$work/cargo-home; fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$course/target}
export NO_COLOR=1
grader=$CARGO_TARGET_DIR/release/grader

# Seconds left before Autolab's own timeout kills everything (and then no
# score line would be printed): each step gets what remains, less a margin
# for the zero.
left() {
  local s=$((TIMEOUT - 20 - SECONDS))
  echo $((s > 1 ? s : 1))
}

# Every check at 0 with the reason (a message, or @FILE), and stop.
zero() {
  "$grader" zero "$LAB" "$1" --format autolab
  exit 0
}

echo "==> building the grader"
if ! (cd "$course" && timeout -s KILL "$(left)" cargo build --release --offline --quiet -p grader) \
    > "$work/grader-build.log" 2>&1; then
  tail -n 40 "$work/grader-build.log"
  exit 1
fi

echo "==> unpacking your handin"
# The archive is the student's: no owners or modes taken from it, and GNU
# tar refuses absolute names and '..'.
if ! tar xf "$handin" -C "$work/handin" --no-same-owner --no-same-permissions > "$work/why" 2>&1; then
  zero "your handin is not a tar archive ($(head -n 1 "$work/why")). Make it from the course's folder with: tar cf handin.tar labs/$LAB/src"
fi

echo "==> building your handin"
# The scratch workspace is inside iomux-labs/, so that cargo finds the
# vendored dependencies there (iomux-labs/.cargo/config.toml): Autolab's
# containers usually have no network.
timeout -s KILL "$(left)" "$grader" build "$LAB" "$work/handin" --workspace "$course" \
  --scratch "$course/autolab-build" --out "$work/$LAB" > "$work/why" 2>&1
status=$?
if [ $status -eq 137 ]; then
  zero "the build did not finish within the assessment's time limit ($TIMEOUT s)"
elif [ $status -ne 0 ]; then
  zero "@$work/why"
fi

echo "==> grading"
# LEADERBOARD=1: an echo server that passed every check is measured once
# more for the scoreboard; the grader says on stderr what it measured or why
# not, and that line goes to the student too.
export GRADER_LEADERBOARD=${LEADERBOARD:-0}
timeout -s KILL "$(left)" "$grader" "$LAB" --bin "$work/$LAB" --format autolab \
  > "$work/report" 2> "$work/grader.log"
status=$?
if { [ $status -eq 0 ] || [ $status -eq 1 ]; } && tail -n 1 "$work/report" | grep -q '^{.*"scores":{'; then
  grep '^leaderboard: ' "$work/grader.log"
  cat "$work/report"
elif [ $status -eq 137 ]; then
  zero "the grading did not finish within the assessment's time limit ($TIMEOUT s): ask your instructor to raise it"
else
  { echo "the grader stopped unexpectedly (exit status $status); please tell your instructor."; tail -n 20 "$work/grader.log"; } > "$work/why"
  zero "@$work/why"
fi
exit 0
