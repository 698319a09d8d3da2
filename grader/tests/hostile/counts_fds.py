#!/usr/bin/env python3
"""Refuses to start unless its only fds are stdin, stdout and stderr, then
serves correctly: whatever fds the grader itself inherited (a shell's, a CI
runner's) must not reach the program, or the fd numbers a student's program
sees, and its messages show, would depend on where it is graded."""
import os
import sys
import bound

bound.end_within(60)
extra = [fd for fd in map(int, os.listdir("/proc/self/fd")) if fd > 2]
# listdir's own directory fd is among them, and closed by now.
extra = [fd for fd in extra if os.path.exists(f"/proc/self/fd/{fd}")]
if extra:
    print(f"counts_fds: inherited fds {extra}", file=sys.stderr)
    sys.exit(1)
bound.serve()
