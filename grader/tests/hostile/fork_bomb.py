#!/usr/bin/env python3
"""A bounded fork bomb: a child forks a tree of at most 2**10 sleeping
processes (each ends within 30 s), while the program serves correctly.
Run as an unprivileged user, RLIMIT_NPROC stops the tree early."""
import os
import bound

DEPTH = 10

if os.fork() == 0:
    bound.end_within(30)
    for _ in range(DEPTH):
        try:
            os.fork()  # parent and child both go on forking
        except OSError:
            break  # EAGAIN: the process limit holds
    bound.sleep_until_killed(30)
bound.end_within(120)
bound.serve()
