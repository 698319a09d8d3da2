#!/usr/bin/env bash
# Builds Autolab's autograding files for one lab (docs/instructors.md,
# "Autolab"), in DEST:
#   autograde.tar       the student copy of the course (no solutions: the
#                       handin runs in the same container), its dependencies
#                       vendored for an offline build, and autolab/ (grade.sh,
#                       autolab.conf)
#   autograde-Makefile  what Autolab runs for each handin
#   problems.txt        the problems to define in Autolab: one per check,
#                       with its points (problems.yml: the same, in the
#                       assessment config's YAML)
#   Dockerfile          a grading image with Rust, for Tango
#
# usage: tools/autolab.sh LAB DEST [TIMEOUT] [LEADERBOARD]
#   TIMEOUT: the assessment's autograding timeout in seconds, as set in
#   Autolab (default 900); the autograder keeps within it.
#   LEADERBOARD: 1 measures an echo server that passed every check under a
#   short load for the scoreboard (never part of the score).
set -euo pipefail
die() { echo "autolab: $*" >&2; exit 1; }
[ $# -ge 2 ] || { echo "usage: tools/autolab.sh LAB DEST [TIMEOUT] [LEADERBOARD]" >&2; exit 2; }
lab=$1 dest=$2 timeout=${3:-900} leaderboard=${4:-0}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
[ -d "$root/labs/$lab" ] && [ "$lab" != labkit ] || die "no lab '$lab' in labs/"
case "$timeout" in '' | *[!0-9]*) die "TIMEOUT must be a number of seconds";; esac
case "$leaderboard" in 0|1) ;; *) die "LEADERBOARD must be 1 (on) or 0 (off)";; esac
[ "$timeout" -ge 300 ] || die "TIMEOUT must be at least 300 s: the grader and the handin are built in the container"
handin=handin.tar

echo "autolab: building the grader (for the list of checks)"
(cd "$root" && cargo build --quiet --release -p grader)
grader=${CARGO_TARGET_DIR:-$root/target}/release/grader
[ "${grader#/}" != "$grader" ] || grader=$root/$grader

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
copy=$stage/iomux-labs
"$here/handout.sh" "$copy" >/dev/null
echo "autolab: vendoring the dependencies (Autolab's containers usually have no network)"
# As the Gradescope setup does: from cargo's cache if it can, else online.
if ! (cd "$copy" && cargo vendor --quiet --offline vendor >/dev/null 2>&1); then
  (cd "$copy" && cargo vendor --quiet vendor >/dev/null) || die "cargo vendor failed"
fi
# Every build in the copy (and in the scratch workspaces grade.sh makes
# inside it) takes the crates from vendor/, never from the network.
mkdir -p "$copy/.cargo"
cat > "$copy/.cargo/config.toml" <<'TOML'
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "vendor"
TOML
mkdir -p "$stage/autolab"
cp "$here/autolab/grade.sh" "$stage/autolab/"
printf 'LAB=%s\nTIMEOUT=%s\nLEADERBOARD=%s\n' "$lab" "$timeout" "$leaderboard" > "$stage/autolab/autolab.conf"

mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
rm -f "$dest/autograde.tar"
# Compressed (GNU tar reads it as it is): the vendored sources are large.
tar czf "$dest/autograde.tar" -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner iomux-labs autolab
zero=$("$grader" zero "$lab" "the autograder could not run" --format autolab | tail -n 1)
sed -e "s|@LAB@|$lab|g" -e "s|@HANDIN@|$handin|g" -e "s|@ZERO@|$zero|" \
  "$here/autolab/autograde-Makefile" > "$dest/autograde-Makefile"
# The image gets the Rust this export was built and tested with.
rust=$(rustc --version | awk '{print $2}')
case "$rust" in *[!0-9.]* | '') rust=stable;; esac
sed "s|@RUST@|$rust|" "$here/autolab/Dockerfile" > "$dest/Dockerfile"

# The problems: `grader --list` prints "  name  points  title" per check.
"$grader" --list "$lab" | tail -n +2 | awk '{print $1, $2}' > "$dest/problems.txt"
{
  echo "problems:"
  awk '{printf "- name: %s\n  description: '"''"'\n  max_score: %s.0\n  optional: false\n", $1, $2}' "$dest/problems.txt"
} > "$dest/problems.yml"

total=$(awk '{s += $2} END {print s}' "$dest/problems.txt")
echo "autolab: $lab written to $dest:"
echo "  autograde.tar ($(du -h "$dest/autograde.tar" | cut -f1)), autograde-Makefile, Dockerfile"
echo "  handin file name: $handin (students: tar cf $handin labs/$lab/src)"
echo "  autograding timeout: $timeout s; leaderboard: $([ "$leaderboard" = 1 ] && echo "on (scoreboard: total, round trips/s, p99 ms)" || echo off)"
echo "  problems to define in Autolab ($total points; also in problems.txt and problems.yml):"
sed 's/^/    /' "$dest/problems.txt"
