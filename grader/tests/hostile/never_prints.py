#!/usr/bin/env python3
"""Neither listens nor prints: it just sleeps."""
import bound

bound.end_within(30)
bound.sleep_until_killed(30)
