#!/usr/bin/env bash
# Exports the student copy of the course: everything a student needs to do
# the labs and grade them (`make grade LAB=x` works in it), without the
# reference solutions, the broken implementations, the grader's own tests
# (they need the solutions) and the instructors' material.
#
# usage: tools/handout.sh DEST        (DEST must not exist, or be empty)
set -euo pipefail

die() { echo "handout: $*" >&2; exit 1; }
[ $# -eq 1 ] || { echo "usage: tools/handout.sh DEST" >&2; exit 2; }
dest=$1
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || die "run it from a git checkout of the course"
if [ -e "$dest" ] && [ -n "$(ls -A "$dest")" ]; then die "$dest exists and is not empty"; fi
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

# Instructor-only material: paths (prefixes) left out of the student copy.
excluded='^(solutions/|grader/broken[^/]*/|grader/tests/|docs/instructors|\.ci/|\.github/|tools/)'

git ls-files -z --cached --others --exclude-standard \
  | grep -zEv "$excluded" \
  | while IFS= read -r -d '' file; do
      [ -e "$file" ] || continue   # deleted but not yet committed
      mkdir -p "$dest/$(dirname "$file")"
      cp -p "$file" "$dest/$file"
    done

# The workspace without the packages that were left out.
sed -i -E '/"(solutions\/|grader\/broken)[^"]*",?/d; /^echo_core *=/d' "$dest/Cargo.toml"
# A marker the Makefile and the docs can tell the copy by.
echo "student copy exported from $(git describe --always --dirty) on $(date -u +%Y-%m-%d)" > "$dest/HANDOUT"
echo "handout: student copy written to $dest"
