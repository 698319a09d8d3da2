#!/usr/bin/env bash
# Exports the student copy of the course: everything a student needs to do
# the labs and grade them (`make grade LAB=x` works in it), without the
# reference solutions, the broken implementations, the grader's own tests
# (they need the solutions) and the instructors' material.
#
# usage: tools/handout.sh DEST [LAB...]   (DEST must not exist, or be empty)
#   LAB...: only these labs' stubs and handouts (all by default). The timeouts
#   stub contains a complete echo server, so hand it out only once the echo
#   labs are past their deadline.
set -euo pipefail

die() { echo "handout: $*" >&2; exit 1; }
[ $# -ge 1 ] || { echo "usage: tools/handout.sh DEST [LAB...]" >&2; exit 2; }
dest=$1
shift
labs=("$@")
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || die "run it from a git checkout of the course"
if [ -e "$dest" ] && [ -n "$(ls -A "$dest")" ]; then die "$dest exists and is not empty"; fi
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

# Instructor-only material: paths (prefixes) left out of the student copy.
excluded='^(solutions/|grader/broken[^/]*/|grader/tests/|docs/instructors|\.ci/|\.github/|tools/)'
# Labs not handed out yet: their stub and handout.
left_out=()
if [ ${#labs[@]} -gt 0 ]; then
  for dir in labs/*/; do
    lab=$(basename "$dir")
    [ "$lab" = labkit ] && continue
    case " ${labs[*]} " in *" $lab "*) ;; *) left_out+=("$lab");; esac
  done
  for lab in "${labs[@]}"; do
    [ -d "labs/$lab" ] && [ "$lab" != labkit ] || die "no lab '$lab' in labs/"
  done
fi
for lab in "${left_out[@]}"; do
  excluded="${excluded%)}|labs/$lab/|docs/labs/$lab\.md)"
done

git ls-files -z --cached --others --exclude-standard \
  | grep -zEv "$excluded" \
  | while IFS= read -r -d '' file; do
      [ -e "$file" ] || continue   # deleted but not yet committed
      mkdir -p "$dest/$(dirname "$file")"
      cp -p "$file" "$dest/$file"
    done

# The workspace without the packages that were left out.
sed -i -E '/"(solutions\/|grader\/broken)[^"]*",?/d; /^echo_core *=/d' "$dest/Cargo.toml"
for lab in "${left_out[@]}"; do
  sed -i -E "/\"labs\/$lab\",?/d" "$dest/Cargo.toml"
  # The Makefile's list of labs, so that `make grade` only builds these.
  sed -i -E "s/^(LABS :=.*) $lab( |\$)/\1\2/" "$dest/Makefile"
done
# A marker the Makefile and the docs can tell the copy by.
echo "student copy exported from $(git describe --always --dirty) on $(date -u +%Y-%m-%d)" > "$dest/HANDOUT"
echo "handout: student copy written to $dest"
