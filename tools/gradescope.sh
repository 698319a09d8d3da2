#!/usr/bin/env bash
# Builds a Gradescope autograder zip for one lab: the student copy of the
# course (no solutions: a submission runs inside the same container and must
# not be able to read them), setup.sh, run_autograder and autograder.conf.
#
# usage: tools/gradescope.sh LAB OUT.zip [HIDDEN] [LEADERBOARD]
#   HIDDEN: comma-separated checks whose results students see only after the
#   instructor publishes the grades (visibility "after_published").
#   LEADERBOARD: 1 measures an echo server that passed every check under a
#   short load for the assignment's leaderboard (never part of the score).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: tools/gradescope.sh LAB OUT.zip [HIDDEN] [LEADERBOARD]" >&2; exit 2; }
lab=$1 out=$2 hidden=${3:-} leaderboard=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
[ -d "$here/../labs/$lab" ] || { echo "gradescope: no lab '$lab' in labs/" >&2; exit 2; }
case "$hidden" in *[!a-z0-9_,]*) echo "gradescope: HIDDEN must be check names separated by commas" >&2; exit 2;; esac
case "$leaderboard" in ''|0|1) ;; *) echo "gradescope: LEADERBOARD must be 1 (on) or 0 (off)" >&2; exit 2;; esac
command -v python3 >/dev/null || { echo "gradescope: python3 is needed to write the zip" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
"$here/handout.sh" "$stage/source" >/dev/null
cp "$here/gradescope/setup.sh" "$here/gradescope/run_autograder" "$stage/source/"
chmod +x "$stage/source/setup.sh" "$stage/source/run_autograder"
printf 'LAB=%s\nHIDDEN=%s\nLEADERBOARD=%s\n' "$lab" "$hidden" "${leaderboard:-0}" > "$stage/source/autograder.conf"
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
rm -f "$out"
# Gradescope wants setup.sh and run_autograder at the top of the zip.
(cd "$stage/source" && python3 - "$out" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for folder, dirs, files in os.walk("."):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            z.write(path, os.path.relpath(path, "."))
PY
)
echo "gradescope: autograder for $lab written to $out"
