#!/usr/bin/env python3
"""nonblocking_read in Python: copy a pipe, FIFO or file to stdout.

It implements the "nonblocking_read" section of CONTRACT.md from scratch,
with nothing but the standard library, to show that the grader grades the
contract and not the Rust reference: a correct program in any language
scores 100.

    nonblocking_read.py [--blocking] [--retry-ms MS] [PATH]
"""

import fcntl
import os
import sys
import time

PROG = os.path.basename(sys.argv[0])
USAGE = f"usage: {PROG} [--blocking] [--retry-ms MS] [PATH]"
CHUNK = 16 * 1024  # bytes asked for per read(): smaller than the Rust ones, on purpose


def usage_error(message):
    print(f"{PROG}: {message}\n{USAGE}", file=sys.stderr)
    sys.exit(2)


def parse(argv):
    blocking, retry_ms, path = False, 10, None
    args = iter(argv)
    for arg in args:
        if arg == "--blocking":
            blocking = True
        elif arg == "--retry-ms" or arg.startswith("--retry-ms="):
            value = arg.partition("=")[2] if "=" in arg else next(args, None)
            if value is None or not value.isdigit():
                usage_error(f"bad value for --retry-ms: {value!r}")
            retry_ms = int(value)
        elif arg.startswith("-") and arg != "-":
            usage_error(f"unknown option '{arg}'")
        elif path is None:
            path = arg
        else:
            usage_error(f"unexpected argument '{arg}'")
    return blocking, retry_ms, path


def write_all(fd, data):
    # os.write may take part of the data (a stop signal during a long write
    # to a pipe): write the rest. EINTR is retried by Python itself (PEP 475).
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            time.sleep(0.001)  # a non-blocking stdout that is full


def copy(fd, retry):
    reads = nbytes = eagain = 0
    while True:
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:  # EAGAIN / EWOULDBLOCK: no data yet
            eagain += 1
            time.sleep(retry)
            continue
        if not data:
            return reads, nbytes, eagain
        reads += 1
        nbytes += len(data)
        write_all(1, data)


def main():
    blocking, retry_ms, path = parse(sys.argv[1:])
    if path is None:
        fd = 0
    else:
        try:
            fd = os.open(path, os.O_RDONLY)  # a FIFO: waits for a writer
        except OSError as err:
            print(f"{PROG}: cannot open {path}: {err.strerror}", file=sys.stderr)
            sys.exit(1)
    saved = fcntl.fcntl(fd, fcntl.F_GETFL)
    if not blocking:
        fcntl.fcntl(fd, fcntl.F_SETFL, saved | os.O_NONBLOCK)
    try:
        counts = copy(fd, retry_ms / 1000)
    except OSError as err:
        error = err
    else:
        error = None
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, saved)  # on every way out
    if error is not None:
        print(f"{PROG}: {error.strerror or error}", file=sys.stderr)
        sys.exit(1)
    print("reads=%d bytes=%d eagain=%d" % counts, file=sys.stderr)


if __name__ == "__main__":
    main()
