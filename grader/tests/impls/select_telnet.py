#!/usr/bin/env python3
"""select_telnet in Python: a telnet-like client on one thread and select.select().

It implements the "select_telnet" section of CONTRACT.md from scratch, with
nothing but the standard library, to show that the grader grades the contract
and not the Rust reference: a correct program in any language scores 100.

    select_telnet.py HOST PORT

Shape of the program: every turn of the loop builds the read and write lists
afresh (stdin while it is open and the buffer has room, the socket always for
reading, the socket for writing only while bytes wait), sleeps in select()
with no timeout, and does one read or write per ready fd. os.read/os.write on
raw fds: no Python buffering that select cannot see.
"""

import errno
import os
import select
import socket
import sys

PROG = "select_telnet"
CHUNK = 32 * 1024          # bytes per read
HIGH_WATER = 48 * 1024     # stop reading stdin while this many wait to be sent
CLOSED = "Connection closed by foreign host."

# Errors that mean the peer is gone (a reset, or a write after one).
PEER_GONE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def usage_error(message):
    print(f"{PROG}: {message}\nusage: {PROG} HOST PORT", file=sys.stderr)
    sys.exit(2)


def fail(message):
    print(f"{PROG}: {message}", file=sys.stderr)
    sys.exit(1)


def closed_by_foreign_host():
    print(CLOSED, file=sys.stderr)
    sys.exit(0)


def write_stdout(data):
    """Blocking writes of all of `data` to fd 1; a closed stdout is fatal."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(1, view)
        except InterruptedError:
            continue
        except OSError as err:
            fail(f"write to stdout: {err.strerror}")
        view = view[n:]


def main(argv):
    if len(argv) != 2:
        usage_error("expected HOST and PORT")
    host, port_text = argv
    try:
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        usage_error(f"bad port '{port_text}'")
    try:
        sock = socket.create_connection((host, port))
    except OSError as err:
        fail(f"connect to {host}:{port}: {err.strerror or err}")
    sock.setblocking(False)

    stdin_open = True
    shut_down = False
    pending = bytearray()

    while True:
        readers = [sock]
        if stdin_open and len(pending) < HIGH_WATER:
            readers.append(0)
        writers = [sock] if pending else []
        try:
            readable, writable, _ = select.select(readers, writers, [])
        except InterruptedError:
            continue

        if sock in readable:
            try:
                data = sock.recv(CHUNK)
            except BlockingIOError:
                data = None
            except PEER_GONE:
                closed_by_foreign_host()
            except OSError as err:
                fail(f"read from socket: {err.strerror}")
            if data == b"":
                closed_by_foreign_host()
            if data:
                write_stdout(data)

        if sock in writable:
            try:
                n = sock.send(pending)
                del pending[:n]
            except BlockingIOError:
                pass
            except PEER_GONE:
                closed_by_foreign_host()
            except OSError as err:
                fail(f"write to socket: {err.strerror}")

        if 0 in readable:
            try:
                data = os.read(0, CHUNK)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError as err:
                fail(f"read from stdin: {err.strerror}")
            if data == b"":
                stdin_open = False
            elif data:
                pending += data

        if not stdin_open and not pending and not shut_down:
            shut_down = True
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError as err:
                if err.errno != errno.ENOTCONN:
                    fail(f"shutdown: {err.strerror}")


if __name__ == "__main__":
    main(sys.argv[1:])
