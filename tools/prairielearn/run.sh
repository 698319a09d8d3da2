#!/usr/bin/env bash
# PrairieLearn's external grader runs this for every submission, as root, in
# the grading image (Dockerfile): `/iomux/run.sh LAB SECONDS`, SECONDS being
# the job's timeout in the question's info.json. It builds the student's
# files without trusting them, grades the program and writes
# /grade/results/results.json. Whatever happens (no files, a refused or
# failed build, a grader failure, a build or a grade that runs out of time),
# results.json is written before PrairieLearn's timeout, and it never gives
# points for checks that did not pass.
#
# - The uploaded files (/grade/student) are laid out as labs/LAB/src from
#   the question's map (/grade/tests/files.txt: "uploaded name<TAB>path
#   under src/"); any other file is kept at the top, where `grader build`
#   refuses a Cargo.toml that is not the lab's and any build.rs.
# - `grader build` builds them with the lab's own Cargo.toml, offline (the
#   image vendored and compiled the dependencies, setup.sh), as the
#   unprivileged user RUN_AS (default nobody); the program runs as RUN_AS
#   too, and the grader kills every process it started at the end of each
#   check. results.json is written by root, in a folder only root can write.
#
# GRADE_ROOT (default /grade) and IOMUX_ROOT (default: this script's folder)
# let the course's tests run it outside PrairieLearn.
set -uo pipefail
lab=${1:?usage: run.sh LAB [SECONDS]}
job=${2:-600}
grade=${GRADE_ROOT:-/grade}
home=${IOMUX_ROOT:-$(cd "$(dirname "$0")" && pwd)}
src=$home/course
grader=${CARGO_TARGET_DIR:-$src/target}/release/grader
export GRADER_RUN_AS=${RUN_AS:-nobody}
# A submission's build gets at most this long; the grade gets the rest of
# the job, less a reserve to write results.json before PrairieLearn kills
# the container.
build_limit=180
reserve=15

# Root-owned and not writable by RUN_AS: nothing of the submission can
# write the results.
mkdir -p "$grade/results"
chown 0:0 "$grade/results" 2>/dev/null
chmod 755 "$grade/results"
results=$grade/results/results.json
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# In the real container, nothing of RUN_AS may outlive the grading (the
# grader kills what each check started; this is the backstop). Not when a
# test runs this on a shared machine, where RUN_AS has other processes.
kill_leftovers() {
  if [ -z "${GRADE_ROOT:-}" ]; then pkill -KILL -u "$GRADER_RUN_AS" 2>/dev/null; fi
  return 0
}

# 0 points with the reason (WHY or @FILE). If even the grader cannot run,
# the image is broken: "gradable": false, which costs the student nothing.
zero() {
  kill_leftovers
  if "$grader" zero "$lab" "$1" --format prairielearn > "$work/zero.json" 2>/dev/null; then
    cp "$work/zero.json" "$results"
  else
    printf '%s\n' '{"gradable": false, "score": 0, "message": "the grading image cannot run the grader; please tell your instructor", "format_errors": ["the grading image cannot run the grader; please tell your instructor"]}' > "$results"
  fi
}

# The uploaded files, laid out as the lab's folder.
submission=$work/submission
mkdir -p "$submission/src"
map=$grade/tests/files.txt
for file in "$grade/student"/* "$grade/student"/.[!.]*; do
  [ -f "$file" ] || continue
  name=$(basename "$file")
  path=
  if [ -f "$map" ]; then path=$(awk -F '\t' -v n="$name" '$1 == n { print $2; exit }' "$map"); fi
  if [ -n "$path" ]; then
    mkdir -p "$(dirname "$submission/src/$path")"
    cp "$file" "$submission/src/$path"
  else
    cp "$file" "$submission/$name"
  fi
done

timeout -s KILL "$build_limit" "$grader" build "$lab" "$submission" --workspace "$src" \
  --scratch "$home/build/$lab" --out "$work/$lab" > "$work/why" 2>&1
status=$?
if [ $status -eq 137 ]; then
  echo "the build did not finish within $build_limit s" >> "$work/why"
fi
if [ $status -ne 0 ]; then
  zero "@$work/why"
  exit 0
fi

left=$((job - reserve - SECONDS))
[ $left -ge 1 ] || left=1   # (timeout 0 would mean no limit)
timeout -s KILL "$left" "$grader" "$lab" --bin "$work/$lab" --format prairielearn \
  > "$work/results.json" 2> "$work/grader.log"
status=$?
kill_leftovers
# The grader's own log (the leaderboard's line, say): for the course staff,
# in the grading job's output.
cat "$work/grader.log" >&2
if { [ $status -eq 0 ] || [ $status -eq 1 ]; } && grep -q '"tests"' "$work/results.json"; then
  cp "$work/results.json" "$results"
else
  { echo "the grader stopped unexpectedly (exit status $status, ${left} s left of the job); please tell your instructor."
    tail -n 20 "$work/grader.log"; } > "$work/why"
  zero "@$work/why"
fi
exit 0
