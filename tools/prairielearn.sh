#!/usr/bin/env bash
# Exports what a PrairieLearn course needs to grade one lab with PrairieLearn's
# external grader:
#
#   DEST/image/        the grading image's build folder: Dockerfile, setup.sh,
#                      run.sh (the entrypoint, /iomux/run.sh in the image)
#                      and course/, the student copy (no solutions)
#   DEST/questions/iomux_LAB/
#                      the question: info.json (external grading on, the
#                      image, the entrypoint, the timeout), question.html (a
#                      file upload for the lab's .rs files) and tests/files.txt
#                      (where each uploaded file goes under src/)
#
# usage: tools/prairielearn.sh LAB DEST [IMAGE]
#   DEST must not exist, be empty, or be an earlier export (replaced).
#   IMAGE: the image name PrairieLearn pulls (default a placeholder to edit).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: tools/prairielearn.sh LAB DEST [IMAGE]" >&2; exit 2; }
lab=$1 dest=$2 image=${3:-CHANGE-ME/iomux-grader:latest}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
die() { echo "prairielearn: $*" >&2; exit 1; }
[ -d "$root/labs/$lab" ] && [ "$lab" != labkit ] || die "no lab '$lab' in labs/"
case "$image" in *[!A-Za-z0-9._/:@-]*|"") die "IMAGE '$image' is not a Docker image name";; esac
command -v python3 >/dev/null || die "python3 is needed to write info.json"

# The job's timeout: the lab's grading budget (course.rs), plus run.sh's
# build limit (180 s), a minute for the grader's start and its last check,
# and run.sh's reserve (15 s) to write results.json. PrairieLearn's cap is
# 600 s.
budget=$(awk -v lab="\"$lab\"," '$1 == "name:" && $2 == lab { found = 1 }
  found && /budget: secs\(/ { sub(/.*secs\(/, ""); sub(/\).*/, ""); print; exit }' \
  "$root/grader/src/course.rs")
[ -n "$budget" ] || die "cannot find the budget of $lab in grader/src/course.rs"
timeout=$((budget + 180 + 60 + 15))
[ $timeout -le 600 ] || timeout=600

marker=.iomux-prairielearn
if [ -e "$dest" ] && [ -n "$(ls -A "$dest")" ]; then
  [ -f "$dest/$marker" ] || die "$dest exists, is not empty and is not an earlier export"
  rm -rf "$dest"
fi
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
touch "$dest/$marker"

# The grading image's folder.
"$here/handout.sh" "$dest/image/course" >/dev/null
cp "$here/prairielearn/setup.sh" "$here/prairielearn/run.sh" "$dest/image/"
chmod 755 "$dest/image/setup.sh" "$dest/image/run.sh"
# The toolchain the course was tested with (X.Y), else the latest Rust 1.
rust=$(rustc --version 2>/dev/null | awk '{ print $2 }')
case "$rust" in *[!0-9.]*|"") rust=1;; [0-9]*.[0-9]*.[0-9]*) rust=${rust%.*};; *) rust=1;; esac
sed -e "s/@RUST@/$rust/" -e "s/@LABS@/$lab/" "$here/prairielearn/Dockerfile" > "$dest/image/Dockerfile"

# The question. Uploaded files have no folders: a file of a subfolder of
# src/ is uploaded as folder-name.rs (a hyphen cannot be in a module name).
question=$dest/questions/iomux_$lab
mkdir -p "$question/tests"
(cd "$root/labs/$lab/src" && find . -name '*.rs' -type f | sed 's|^\./||' | LC_ALL=C sort) \
  | while IFS= read -r path; do printf '%s\t%s\n' "${path//\//-}" "$path"; done \
  > "$question/tests/files.txt"
files=$(cut -f1 "$question/tests/files.txt" | paste -sd, - | sed 's/,/, /g')
nested=
if grep -q / "$question/tests/files.txt"; then
  nested=" (a file of a subfolder is uploaded as <code>folder-name.rs</code>: <code>runtime/mod.rs</code> as <code>runtime-mod.rs</code>)"
fi
title=$(sed -n '1{s/^# *//;s/^Lab: *//;p}' "$root/docs/labs/$lab.md")
title_html=$(printf '%s' "$title" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' \
  -e 's/`\([^`]*\)`/<code>\1<\/code>/g')
python3 - "$here/prairielearn/question.html" "$question/question.html" \
  "$lab" "$title_html" "$nested" "$files" <<'PY'
import sys
template, out, lab, title, nested, files = sys.argv[1:]
text = open(template).read()
for key, value in (("@LAB@", lab), ("@TITLE@", title), ("@NESTED@", nested), ("@FILES@", files)):
    text = text.replace(key, value)
open(out, "w").write(text)
PY
python3 - "$question/info.json" "$lab" "$title" "$image" "$timeout" <<'PY'
import json, sys, uuid
out, lab, title, image, timeout = sys.argv[1:]
repository = image.split("@")[0]
if ":" in repository.rsplit("/", 1)[-1]:
    repository = repository.rsplit(":", 1)[0]
info = {
    # Stable across exports with the same image (its tag aside): exporting
    # again updates the same question. The image's name keeps two courses'
    # questions apart.
    "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, "https://iomux-labs/prairielearn/" + repository + "/" + lab)),
    "title": "iomux-labs " + title.replace("`", ""),
    "topic": "I/O multiplexing",
    "tags": ["iomux-labs", lab],
    "type": "v3",
    "singleVariant": True,
    "gradingMethod": "External",
    "externalGradingOptions": {
        "enabled": True,
        "image": image,
        "entrypoint": "/iomux/run.sh " + lab + " " + timeout,
        "timeout": int(timeout),
        # The labs use loopback only.
        "enableNetworking": False,
    },
}
with open(out, "w") as f:
    json.dump(info, f, indent=2)
    f.write("\n")
PY

echo "prairielearn: $lab exported to $dest"
echo "  1. docker build -t $image $dest/image && docker push $image"
echo "  2. copy $question into your course's questions/ and sync"
[ "$image" != "CHANGE-ME/iomux-grader:latest" ] ||
  echo "  (IMAGE=... names the image; or edit \"image\" in info.json)"
