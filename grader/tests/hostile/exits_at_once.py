#!/usr/bin/env python3
"""Prints its line, then main returns."""
import bound

bound.listen()
