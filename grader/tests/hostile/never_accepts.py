#!/usr/bin/env python3
"""Listens and prints its line, then never accepts a connection."""
import bound

bound.end_within(120)
sock = bound.listen()
bound.sleep_until_killed(120)
