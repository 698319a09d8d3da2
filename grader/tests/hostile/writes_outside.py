#!/usr/bin/env python3
"""Tries to change files it has no business with: $HOSTILE_VICTIM (a file
of the grader's: its binary, a report) and a new file in $HOSTILE_DIR.
Failures are ignored; then it serves correctly."""
import os
import bound

bound.end_within(120)
victim = os.environ.get("HOSTILE_VICTIM")
folder = os.environ.get("HOSTILE_DIR")
for attempt in (
    lambda: open(victim, "w").write("overwritten by the program under test\n"),
    lambda: os.unlink(victim),
    lambda: open(os.path.join(folder, "planted"), "w").write("planted\n"),
):
    try:
        attempt()
    except (OSError, TypeError):
        pass
bound.serve()
