#!/usr/bin/env python3
"""Prints its `listening on` line and never flushes it: stdout is a pipe,
so the line waits in Python's buffer, as it would in Rust's, C's or Go's."""
import socket
import bound

bound.end_within(30)
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
sock.listen(128)
print(f"listening on 127.0.0.1:{sock.getsockname()[1]}")  # no flush
bound.sleep_until_killed(30)
