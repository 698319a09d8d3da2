#!/usr/bin/env python3
"""sigio_udp in Python: a UDP echo server driven by SIGIO (signal-driven I/O).

It implements the "sigio_udp" section of CONTRACT.md from scratch, with
nothing but the standard library, to show that the grader grades the contract
and not the Rust reference: a correct program in any language scores 100.

    sigio_udp.py [--port PORT]

Shape of the program: SIGIO is blocked for the whole run, so it is never
delivered, only left pending; the loop receives until EAGAIN, then takes the
pending signal with sigwaitinfo(), which sleeps until there is one. A
datagram that arrives after the last EAGAIN leaves its signal pending, and
the next sigwaitinfo() returns at once: no wake-up can be lost. The handler
installed for SIGIO never runs here (the signal is always blocked); the
contract asks for one anyway, because a SIGIO delivered with no handler
would end the process.
"""

import fcntl
import os
import signal
import socket
import sys

PROG = os.path.basename(sys.argv[0])
USAGE = f"usage: {PROG} [--port PORT]"

# More than the largest UDP payload over IPv4 (65,507 bytes): a datagram
# larger than the buffer would be cut short without a word.
RECV_SIZE = 65535


def usage_error(message):
    print(f"{PROG}: {message}\n{USAGE}", file=sys.stderr)
    sys.exit(2)


def fail(message):
    """A fatal error that is not a bug: one line on stderr, exit 1."""
    print(f"{PROG}: {message}", file=sys.stderr)
    sys.exit(1)


def parse_port(argv):
    """`[--port PORT]` or `[--port=PORT]`; anything else is a usage error."""
    port = 0
    args = iter(argv)
    for arg in args:
        if arg in ("-h", "--help"):
            print(USAGE)
            sys.exit(0)
        name, eq, value = arg.partition("=")
        if name != "--port":
            usage_error(f"unknown option '{arg}'" if arg.startswith("-")
                        else f"unexpected argument '{arg}'")
        if not eq:
            value = next(args, None)
            if value is None:
                usage_error("--port needs a value")
        # isascii(): str.isdigit() also accepts digits such as '²'.
        if not (value.isascii() and value.isdigit()) or int(value) > 65535:
            usage_error(f"bad value for --port: '{value}'")
        port = int(value)
    return port


def on_sigio(signum, frame):
    """Never called: SIGIO stays blocked and sigwaitinfo() takes it."""


def make_signal_driven(sock):
    """Handler, mask, owner, flags: in this order, so that no SIGIO the socket
    raises can find the process without a handler or unblocked."""
    signal.signal(signal.SIGIO, on_sigio)
    # Blocked before the socket can raise it: from here on a SIGIO can only
    # be pending, and sigwaitinfo() below takes it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGIO})
    fd = sock.fileno()
    try:
        # Whom the kernel signals when a datagram arrives.
        fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
        # Added to the flags already set, not instead of them. O_NONBLOCK:
        # the drain ends with EAGAIN (BlockingIOError) instead of sleeping.
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_ASYNC | os.O_NONBLOCK)
    except OSError as err:
        fail(f"cannot make the socket signal-driven: {err.strerror or err}")


def drain(sock):
    """Echoes every datagram waiting, until EAGAIN: one SIGIO may stand for
    many datagrams, because a signal already pending is not counted twice."""
    while True:
        try:
            data, peer = sock.recvfrom(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            # An error the socket reports once (then forgets): the datagrams
            # behind it are still there.
            continue
        try:
            # An empty datagram is a datagram like any other: it comes back
            # empty. UDP has no end of input.
            sock.sendto(data, peer)
        except OSError:
            # EAGAIN, or an error for that one sender: the reply is dropped,
            # as UDP allows. Queueing it would let one slow sender grow us.
            pass


def main():
    port = parse_port(sys.argv[1:])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as err:
        fail(f"cannot bind UDP 127.0.0.1:{port}: {err.strerror or err}")
    make_signal_driven(sock)
    # flush: stdout is a pipe when a grader runs us, and a pipe is buffered.
    print(f"listening on 127.0.0.1:{sock.getsockname()[1]}", flush=True)
    while True:
        # First drain, then wait: datagrams that came before O_ASYNC was set
        # raised no signal.
        drain(sock)
        signal.sigwaitinfo({signal.SIGIO})


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
