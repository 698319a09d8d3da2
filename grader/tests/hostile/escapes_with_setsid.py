#!/usr/bin/env python3
"""Starts a daemon the classic way (fork, setsid, fork again: a new session
and process group, re-parented away from its parent), then serves correctly.
The daemon sleeps, at most 60 s."""
import os
import bound

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        bound.end_within(60)
        bound.sleep_until_killed(60)
    os._exit(0)
os.wait()
bound.end_within(120)
bound.serve()
