#!/usr/bin/env python3
"""Accepts every connection, never reads from any, and spins the CPU."""
import bound

bound.end_within(120)
sock = bound.listen()
sock.setblocking(False)
held = []
while True:
    try:
        held.append(sock.accept()[0])
    except BlockingIOError:
        pass
