#!/usr/bin/env python3
"""Prints its line, then dies of an uncaught exception (Python's panic)."""
import bound

bound.listen()
raise RuntimeError("boom: the hostile program crashed at start")
