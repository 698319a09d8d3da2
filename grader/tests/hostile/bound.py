"""What the hostile programs share: a self-imposed end, and becoming the
correct poll_echo server once their mischief is set up."""

import os
import signal
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "..", "impls", "poll_echo.py")


def end_within(seconds):
    """SIGALRM (not ignored by any of these programs) ends this process
    after `seconds`, whatever it is doing; it survives exec."""
    signal.alarm(seconds)


def serve():
    """Becomes the correct poll_echo server, keeping this process (its pid,
    its signal dispositions, its alarm)."""
    os.execv(sys.executable, [sys.executable, SERVER] + sys.argv[1:])


def listen():
    """A listening socket on 127.0.0.1, any port, and its `listening on`
    line (flushed)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(f"listening on 127.0.0.1:{sock.getsockname()[1]}", flush=True)
    return sock


def sleep_until_killed(seconds):
    time.sleep(seconds)
    sys.exit(0)
