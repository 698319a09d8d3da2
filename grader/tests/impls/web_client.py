#!/usr/bin/env python3
"""web_client in Python: an HTTP/1.0 client on one thread and selectors (epoll).

It implements the "web_client" section of CONTRACT.md from scratch, with
nothing but the standard library, to show that the grader grades the contract
and not the Rust reference: a correct program in any language scores 100.

    web_client.py [--parallel N] [--timeout-ms T] [--out DIR] URL...

Shape of the program: every fetch is a small state machine (CONNECTING,
SENDING, HEADER, BODY) around one non-blocking socket, registered in one
selector for exactly the event its state waits for. At most N fetches are in
the `active` dict; as soon as one ends (its socket closed at once) the next
URL starts. Every fetch gets the same timeout T from its own connect, so the
fetches' deadlines come in the order they started: the first entry of
`active` (a dict keeps insertion order) always holds the earliest deadline,
and the selector sleeps exactly until it, never on a fixed tick.
"""

import errno
import os
import re
import resource
import selectors
import socket
import stat
import sys
import time

PROG = "web_client"
USAGE = f"usage: {PROG} [--parallel N] [--timeout-ms T] [--out DIR] URL..."

READ_CHUNK = 256 * 1024       # bytes asked for per recv()
HEADER_MAX = 16 * 1024        # longest header accepted, not counting \r\n\r\n
END_OF_HEADER = b"\r\n\r\n"

# `HTTP/1.`, a digit, a space, a three-digit code, then a space or the end.
STATUS_LINE = re.compile(rb"HTTP/1\.[0-9] ([0-9]{3})(?: .*)?", re.DOTALL)
# The same, byte by byte, to refuse a stream as soon as it cannot become one
# (a server that says `SSH-2.0-...` and waits must not wait for our timeout).
STATUS_TEMPLATE = b"HTTP/1.# ###"

CONNECTING, SENDING, HEADER, BODY = "connecting", "sending", "header", "body"


class FetchFailed(Exception):
    """Ends one fetch (never the program) with `error=REASON`."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def reason_of(err_no):
    """The REASON word for an errno from connect, send or recv."""
    if err_no == errno.ECONNREFUSED:
        return "refused"
    if err_no in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
        return "reset"
    if err_no == errno.ETIMEDOUT:
        return "timeout"
    if err_no in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable"
    return "network-error"


# ---------------------------------------------------------------- command line

def usage_error(message):
    sys.stderr.write(f"{PROG}: {message}\n{USAGE}\n")
    sys.stderr.flush()
    sys.exit(2)


def fatal(message):
    """One line on stderr, exit 1 (a fatal error that is not a usage error)."""
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()
    os._exit(1)


def positive(option, text):
    if not re.fullmatch(r"[0-9]+", text) or int(text) == 0:
        usage_error(f"{option} wants a positive integer, not '{text}'")
    return int(text)


def parse_url(url):
    """(host, port, host_header, path) of `http://A.B.C.D[:PORT][/PATH]`."""
    bad = f"bad URL '{url}': "
    if not url.startswith("http://"):
        usage_error(bad + "not http://HOST[:PORT][/PATH] (lower-case scheme)")
    rest = url[len("http://"):]
    slash = rest.find("/")
    authority, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    # `#` (a fragment is never sent) and spaces or control bytes (they would
    # break the request line) have no place in a request's path.
    if any(c == "#" or ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        usage_error(bad + "no '#', spaces or control characters allowed")
    host, colon, port_text = authority.partition(":")
    numbers = host.split(".")
    # Dotted numbers only: a name would need getaddrinfo, which blocks.
    if len(numbers) != 4 or not all(re.fullmatch(r"[0-9]{1,3}", n) and int(n) <= 255 for n in numbers):
        usage_error(bad + f"host '{host}' is not a dotted IPv4 address")
    if colon:
        if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535:
            usage_error(bad + f"port '{port_text}' is not in 1-65535")
        port = int(port_text)
    else:
        port = 80
        port_text = "80"
    address = ".".join(str(int(n)) for n in numbers)
    return address, port, f"{host}:{port_text}", path


def parse_args(argv):
    parallel, timeout_ms, out = 4, 5000, "."
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        option = argv[i]
        if option not in ("--parallel", "--timeout-ms", "--out"):
            usage_error(f"unknown option '{option}'")
        if i + 1 >= len(argv):
            usage_error(f"{option} wants a value")
        value = argv[i + 1]
        if option == "--parallel":
            parallel = positive(option, value)
        elif option == "--timeout-ms":
            timeout_ms = positive(option, value)
        else:
            out = value
        i += 2
    urls = argv[i:]
    if not urls:
        usage_error("no URL given")
    # Every URL is checked before the first connect: a typo in the 500th URL
    # must not surface after 499 fetches.
    fetches = []
    for index, url in enumerate(urls, start=1):
        if url.startswith("-"):
            usage_error(f"option '{url}' after a URL (options come first)")
        fetches.append(Fetch(index, url, *parse_url(url), out))
    return parallel, timeout_ms, out, fetches


def check_out_dir(out):
    """DIR must be a writable directory: find out before any connection."""
    try:
        if not stat.S_ISDIR(os.stat(out).st_mode):
            fatal(f"--out {out}: not a directory")
        # Mode bits do not tell (root writes anywhere, ACLs, read-only
        # mounts): creating a file is the only sure test.
        probe = os.path.join(out, f".{PROG}-probe-{os.getpid()}")
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        os.unlink(probe)
    except OSError as err:
        fatal(f"--out {out}: {err.strerror}")


def raise_fd_limit():
    # 2 fds per fetch in progress and N up to 1,000: the usual soft limit of
    # 1,024 would be too few.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---------------------------------------------------------------------- output

def write_out(text):
    """One line straight to fd 1: no Python buffer, so it leaves at once."""
    view = memoryview(os.fsencode(text))
    while view:
        try:
            view = view[os.write(1, view):]
        except OSError as err:
            # EPIPE (SIGPIPE is ignored by Python): nobody reads any more.
            Fetch.abandon_all()
            fatal(f"stdout: {err.strerror}")


# ---------------------------------------------------------------------- fetches

class Fetch:
    in_flight = []    # every fetch started and not yet closed, for abandon_all

    def __init__(self, index, url, address, port, host_header, path, out):
        self.index, self.url = index, url
        self.final = os.path.join(out, str(index))
        self.part = self.final + ".part"
        self.address = (address, port)
        self.request = memoryview(os.fsencode(f"GET {path} HTTP/1.0\r\nHost: {host_header}\r\n\r\n"))
        self.state = None
        self.sock = None
        self.deadline = None
        self.header = bytearray()
        self.status = None
        self.body_fd = None
        self.body_bytes = 0

    def start(self, selector, timeout_ms):
        """Begin the non-blocking connect; the deadline counts from here."""
        Fetch.in_flight.append(self)
        self.deadline = time.monotonic() + timeout_ms / 1000
        try:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as err:
            raise FetchFailed("no-socket") from err
        # Non-blocking before connect: a blocking connect to a host that never
        # answers would stall every other fetch for minutes.
        self.sock.setblocking(False)
        err_no = self.sock.connect_ex(self.address)
        if err_no == 0:
            # Connected at once (it happens on loopback): a success.
            self.state = SENDING
            selector.register(self.sock, selectors.EVENT_WRITE, self)
        elif err_no == errno.EINPROGRESS:
            # The outcome comes later, as writability.
            self.state = CONNECTING
            selector.register(self.sock, selectors.EVENT_WRITE, self)
        else:
            raise FetchFailed(reason_of(err_no))

    def on_ready(self, selector):
        """One step of the state machine; raises FetchFailed, returns True when done."""
        if self.state == CONNECTING:
            # Writable means the connect ended, not that it succeeded:
            # SO_ERROR says which (ECONNREFUSED, ETIMEDOUT, ... or 0).
            err_no = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err_no:
                raise FetchFailed(reason_of(err_no))
            self.state = SENDING
        if self.state == SENDING:
            return self.send(selector)
        return self.receive()

    def send(self, selector):
        try:
            sent = self.sock.send(self.request)
        except BlockingIOError:
            return False
        except OSError as err:
            raise FetchFailed(reason_of(err.errno)) from err
        # A short write: the rest goes when the socket is writable again.
        self.request = self.request[sent:]
        if not self.request:
            self.state = HEADER
            selector.modify(self.sock, selectors.EVENT_READ, self)
        return False

    def receive(self):
        try:
            data = self.sock.recv(READ_CHUNK)
        except BlockingIOError:
            return False
        except OSError as err:
            raise FetchFailed(reason_of(err.errno)) from err
        if not data:
            # HTTP/1.0: the end of the stream is the end of the body, but an
            # end before the header's empty line is a truncated response.
            if self.state == HEADER:
                raise FetchFailed("bad-response")
            self.finish()
            return True
        if self.state == HEADER:
            self.take_header_bytes(data)
        else:
            self.write_body(data)
        return False

    def take_header_bytes(self, data):
        # `\r\n\r\n` may straddle two reads: search from 3 bytes back.
        searched = max(0, len(self.header) - 3)
        self.header += data
        check_status_prefix(self.header)
        end = self.header.find(END_OF_HEADER, searched)
        if end < 0:
            if len(self.header) > HEADER_MAX + len(END_OF_HEADER):
                raise FetchFailed("bad-response")
            return
        status_line = self.header[: self.header.find(b"\r\n")]
        match = STATUS_LINE.fullmatch(status_line)
        if not match:
            raise FetchFailed("bad-response")
        self.status = match.group(1).decode()
        body_start = bytes(self.header[end + len(END_OF_HEADER):])
        self.header = None
        self.state = BODY
        # The body goes to DIR/i.part; only a complete one is renamed DIR/i.
        try:
            self.body_fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise FetchFailed("file-error") from err
        self.write_body(body_start)

    def write_body(self, data):
        # A regular file: a blocking write is allowed, but may still be short.
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.body_fd, view):]
        except OSError as err:
            raise FetchFailed("file-error") from err
        self.body_bytes += len(data)

    def finish(self):
        os.close(self.body_fd)
        self.body_fd = None
        try:
            # Atomic: DIR/i appears complete or not at all, replacing any old one.
            os.rename(self.part, self.final)
        except OSError as err:
            raise FetchFailed("file-error") from err

    def close(self, selector, failed):
        """Release the socket and file at once; a failed fetch leaves no DIR/i."""
        if self.sock is not None:
            if self.state is not None:
                selector.unregister(self.sock)
            self.sock.close()
            self.sock = None
        if self.body_fd is not None:
            os.close(self.body_fd)
            self.body_fd = None
        if failed:
            # The partial body, and a DIR/i left by an earlier run.
            for path in (self.part, self.final):
                try:
                    os.unlink(path)
                except OSError:
                    pass         # none there (the usual case), or not ours to fix
        Fetch.in_flight.remove(self)

    @classmethod
    def abandon_all(cls):
        """Exiting early: no .part file of ours stays behind."""
        for fetch in list(cls.in_flight):
            if fetch.body_fd is not None:
                os.close(fetch.body_fd)
                fetch.body_fd = None
                try:
                    os.unlink(fetch.part)
                except OSError:
                    pass
        cls.in_flight.clear()


def check_status_prefix(header):
    """Refuse as soon as the first bytes cannot begin a valid status line."""
    for i, byte in enumerate(header[: len(STATUS_TEMPLATE) + 1]):
        if i == len(STATUS_TEMPLATE):
            ok = byte in b" \r"
        elif STATUS_TEMPLATE[i] == ord("#"):
            ok = ord("0") <= byte <= ord("9")
        else:
            ok = byte == STATUS_TEMPLATE[i]
        if not ok:
            raise FetchFailed("bad-response")


# ------------------------------------------------------------------- the loop

def run(parallel, timeout_ms, fetches):
    selector = selectors.DefaultSelector()   # epoll on Linux
    active = {}          # index -> fetch, in start order, so in deadline order
    waiting = iter(fetches)
    remaining = len(fetches)
    ok = failed = 0

    def end(fetch, reason=None):
        nonlocal ok, failed
        fetch.close(selector, failed=reason is not None)
        active.pop(fetch.index, None)
        if reason is None:
            ok += 1
            write_out(f"{fetch.index} {fetch.url} status={fetch.status} bytes={fetch.body_bytes}\n")
        else:
            failed += 1
            write_out(f"{fetch.index} {fetch.url} error={reason}\n")

    while ok + failed < remaining:
        # The sliding window: whenever fewer than N are in progress, start
        # the next URL (one that fails at once makes room for the next).
        while len(active) < parallel:
            fetch = next(waiting, None)
            if fetch is None:
                break
            try:
                fetch.start(selector, timeout_ms)
                active[fetch.index] = fetch
            except FetchFailed as failure:
                end(fetch, failure.reason)
        if not active:
            continue

        # Sleep until something is ready or the earliest deadline (the first
        # fetch started); selectors rounds the timeout up to whole ms.
        earliest = next(iter(active.values())).deadline
        events = selector.select(max(0.0, earliest - time.monotonic()))
        for key, _mask in events:
            fetch = key.data
            try:
                if fetch.on_ready(selector):
                    end(fetch)
            except FetchFailed as failure:
                end(fetch, failure.reason)

        now = time.monotonic()
        for fetch in list(active.values()):
            if fetch.deadline > now:
                break            # the rest started later: their deadlines too
            end(fetch, "timeout")

    write_out(f"done ok={ok} failed={failed}\n")
    return 0 if failed == 0 else 1


def main(argv):
    parallel, timeout_ms, out, fetches = parse_args(argv)
    check_out_dir(out)
    raise_fd_limit()
    sys.exit(run(parallel, timeout_ms, fetches))


if __name__ == "__main__":
    main(sys.argv[1:])
