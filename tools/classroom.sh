#!/usr/bin/env bash
# Makes a student copy a GitHub Classroom template: writes
# .github/workflows/classroom.yml, the autograding workflow Classroom runs on
# every push (one step per lab, each a runner of Classroom's reporter, with
# one test per check: partial credit).
#
# usage: tools/classroom.sh DEST [LAB...]
#   DEST: a student copy (`make handout DEST=...`); if DEST does not exist
#   yet (or is empty), the copy is made first, with only LAB... if named.
#   LAB...: the labs graded (default: every lab in DEST's Makefile).
set -euo pipefail

die() { echo "classroom: $*" >&2; exit 1; }
[ $# -ge 1 ] || { echo "usage: tools/classroom.sh DEST [LAB...]" >&2; exit 2; }
dest=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -e "$dest" ] || [ -z "$(ls -A "$dest")" ]; then
  "$here/handout.sh" "$dest" "$@"
fi
[ -f "$dest/HANDOUT" ] || die "$dest is not a student copy (no HANDOUT file): make it with make handout DEST=..."
labs=("$@")
if [ ${#labs[@]} -eq 0 ]; then
  read -r -a labs <<< "$(sed -n -E 's/^LABS := *//p' "$dest/Makefile")"
fi
[ ${#labs[@]} -gt 0 ] || die "no labs to grade in $dest"
for lab in "${labs[@]}"; do
  case "$lab" in *[!a-z0-9_]*|'') die "'$lab' is not a lab name";; esac
  [ -d "$dest/labs/$lab" ] || die "$dest has no labs/$lab (hand it out first: HANDOUT_LABS)"
done

# A step id per lab: its name without '_' (the reporter reads
# <ID upper-cased>_RESULTS, and says a wrong thing about ids with '_').
id() { echo "${1//_/}"; }

workflow=$dest/.github/workflows/classroom.yml
mkdir -p "$(dirname "$workflow")"
{
  sed "s/@TIMEOUT@/$((15 + 5 * ${#labs[@]}))/" "$here/classroom/head.yml"
  for lab in "${labs[@]}"; do
    sed -e "s/@LAB@/$lab/g" -e "s/@ID@/$(id "$lab")/g" "$here/classroom/lab.yml"
  done
  ids=()
  for lab in "${labs[@]}"; do
    ids+=("$(id "$lab")")
  done
  cat <<YAML
      - name: Autograding Reporter
        uses: classroom-resources/autograding-grading-reporter@v1
        env:
YAML
  for lab in "${labs[@]}"; do
    i=$(id "$lab")
    echo "          ${i^^}_RESULTS: \"\${{ steps.$i.outputs.result }}\""
  done
  cat <<YAML
        with:
          runners: $(IFS=,; echo "${ids[*]}")
YAML
} > "$workflow"
echo "classroom: $workflow grades ${labs[*]}"
