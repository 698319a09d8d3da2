#!/usr/bin/env python3
"""Ignores SIGTERM, SIGINT and SIGHUP (ignored dispositions survive exec),
then serves correctly: the grader must still stop it at every check's end."""
import signal
import bound

for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, signal.SIG_IGN)
bound.end_within(120)
bound.serve()
