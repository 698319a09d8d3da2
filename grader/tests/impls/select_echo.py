#!/usr/bin/env python3
"""select_echo in Python: a line echo server on one thread and select.select().

It implements the "Echo servers" and "select_echo" sections of CONTRACT.md
from scratch, with nothing but the standard library, to show that the grader
grades the contract and not the Rust reference: a correct program in any
language scores 100.

    select_echo.py [--port PORT]

Shape of the program: every connection carries an explicit State, changed
only by Conn.advance(). Before every select() the read and write lists are
built afresh from those states (select, unlike poll or epoll, keeps nothing
between calls); the loop sleeps in select() with no timeout and handles
whatever became ready.

select() watches fds below FD_SETSIZE (1024) only: a client whose socket gets
a higher fd is told `ERR server full` and closed at once, and never enters a
select list.
"""

import enum
import os
import resource
import select
import socket
import sys

PROG = os.path.basename(sys.argv[0])
USAGE = f"usage: {PROG} [--port PORT]"

READ_CHUNK = 64 * 1024        # bytes asked for per recv()
MAX_LINE = 8192               # longest line, counting its \n
HIGH_WATER = 64 * 1024        # unsent replies at which we stop reading
COMPACT_AT = 256 * 1024       # sent prefix of the output buffer worth dropping
LONG_LINE_REPLY = b"ERR line too long\n"
SERVER_FULL_REPLY = b"ERR server full\n"

# The size of the kernel's fd_set: select(2) cannot watch an fd at or above
# it. (Python's select.select copes with larger fds on Linux by building its
# own sets, but the contract forbids them, as a C fd_set would overflow.)
FD_SETSIZE = 1024

# Errors that are part of a client's life (ECONNRESET, EPIPE, ETIMEDOUT...):
# they end that connection, never the server. (BlockingIOError, also an
# OSError, is caught before it: it only means "not now".)
CLIENT_ERRORS = OSError


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
            usage_error(f"unexpected argument '{arg}'" if not arg.startswith("-")
                        else f"unknown option '{arg}'")
        if not eq:
            value = next(args, None)
            if value is None:
                usage_error("--port needs a value")
        if not value.isdigit() or int(value) > 65535:
            usage_error(f"bad value for --port: '{value}'")
        port = int(value)
    return port


def raise_fd_limit():
    """The contract asks for it. Here it means that accept() hands out fds of
    1024 and above (which we refuse politely) instead of failing with EMFILE,
    which would leave the listener readable and the client unanswered."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as err:
            print(f"{PROG}: cannot raise RLIMIT_NOFILE: {err}", file=sys.stderr)


def bind_loopback(port):
    """A non-blocking listener on 127.0.0.1 only (never 0.0.0.0)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Like Rust's TcpListener: a restarted server can reuse its port at once.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
        listener.listen(socket.SOMAXCONN)
    except OSError as err:
        fail(f"cannot listen on 127.0.0.1:{port}: {err.strerror or err}")
    # Created before any client, so its fd is low; but a parent could have
    # left us so many fds open that it is not.
    if listener.fileno() >= FD_SETSIZE:
        fail(f"listening socket got fd {listener.fileno()}, "
             f"select() cannot watch fds of {FD_SETSIZE} or more")
    # Non-blocking, so that accept() says EAGAIN instead of sleeping when the
    # connection select() announced is already gone.
    listener.setblocking(False)
    return listener


def find_quit(buf, end):
    """Start of the first line in buf[:end] that is `quit\\n` or `quit\\r\\n`,
    or -1. buf starts at the start of a line.

    Searching for the word with bytes.find (C speed) and checking its
    surroundings is far cheaper than looking at each line in Python."""
    pos = buf.find(b"quit", 0, end)
    while pos >= 0:
        at_line_start = pos == 0 or buf[pos - 1] == 0x0A
        rest = buf[pos + 4:pos + 6]
        if at_line_start and (rest[:1] == b"\n" or rest == b"\r\n"):
            return pos
        pos = buf.find(b"quit", pos + 1, end)
    return -1


def find_long_line(buf, end):
    """Start of the first line in buf[:end] whose first MAX_LINE bytes hold
    no \\n although more bytes follow (the 8193rd byte arrived, so the line is
    too long whatever it is), or -1. buf starts at the start of a line.

    rfind of the last \\n within the next MAX_LINE bytes jumps over every
    (short) line in that window at once, so the cost is per 8 KiB, not per line."""
    start = 0
    while end - start > MAX_LINE:
        newline = buf.rfind(b"\n", start, start + MAX_LINE)
        if newline < 0:
            return start
        start = newline + 1
    return -1


class State(enum.Enum):
    """Where a client is in the protocol.

    A thread-per-client server would keep this in its program counter (which
    loop it is in, which call it is blocked on). An event loop has no stack
    per client: it returns to select() after every step, so the position must
    be written down, here, and each state exists because the loop must do
    something different for a client in it.
    """
    # Echoing lines: read (the client may send more), write if replies wait.
    READING = "reading"
    # Backpressure: 64 KiB or more of replies are unsent, so we stop reading.
    # The kernel buffers fill and the client's writes block, so a client that
    # sends without reading cannot grow our memory. Write only.
    WRITING = "writing"
    # `quit` or a too-long line seen: flush the replies, then shutdown(SHUT_WR).
    # Input is read and thrown away meanwhile, so the client never blocks.
    ENDING = "ending"
    # Our FIN is sent: discard input until the client's EOF, then close.
    # Closing with unread input would make the kernel send a reset, and a
    # reset can destroy replies the client has not read yet.
    LINGERING = "lingering"
    # The client's EOF seen: flush the replies, then close. Nothing is read
    # any more (there is nothing left to read).
    DRAINING = "draining"
    # To be closed and forgotten, after this turn of the loop.
    DONE = "done"


class Event(enum.Enum):
    """What happened to a connection; Conn.advance() turns it into a state."""
    LINES = enum.auto()     # input was taken in; replies may have grown
    SENT = enum.auto()      # a flush ended; replies may have shrunk
    END = enum.auto()       # `quit` or a too-long line
    EOF = enum.auto()       # the client shut down its writing half
    FAILED = enum.auto()    # reset, EPIPE...: the client is gone


class Conn:
    """One client: its socket, the unfinished line, the unsent replies, and
    its State."""

    def __init__(self, sock):
        self.sock = sock
        self.fd = sock.fileno()
        self.partial = b""          # the start of a line with no \n yet
        self.out = bytearray()      # replies; out[sent:] is still unsent
        self.sent = 0
        self.state = State.READING

    def unsent(self):
        return len(self.out) - self.sent

    # -- the state machine ------------------------------------------------

    def advance(self, event):
        """Every change of state happens here, and only here.

            any state   --FAILED-->  DONE
            READING     --END----->  ENDING
            LINGERING   --EOF----->  DONE       (the lingering close is over)
            other       --EOF----->  DRAINING
            READING, WRITING --LINES/SENT--> WRITING if unsent >= 64 KiB,
                                             else READING
        and then, once nothing is unsent:
            ENDING    -> shutdown(SHUT_WR) -> LINGERING (DONE if that fails)
            DRAINING  -> DONE
        """
        state = self.state
        if state is State.DONE:
            return
        if event is Event.FAILED:
            state = State.DONE
        elif event is Event.END:
            state = State.ENDING
        elif event is Event.EOF:
            # From ENDING too: the client closed before our replies were out;
            # send them, then close (no unread input is left, so no reset).
            state = State.DONE if state is State.LINGERING else State.DRAINING
        elif state in (State.READING, State.WRITING):
            state = State.WRITING if self.unsent() >= HIGH_WATER else State.READING
        if not self.unsent():
            if state is State.ENDING:
                # Also when nothing was pending (a lone `quit`): the client
                # must see our FIN.
                state = self.shut_down_writing()
            elif state is State.DRAINING:
                state = State.DONE
        self.state = state

    def shut_down_writing(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return State.DONE
        return State.LINGERING

    # -- what to wait for -------------------------------------------------

    def wants_read(self):
        # ENDING and LINGERING read too: discarded input costs no memory, and
        # reading it is how the client's EOF is seen.
        return self.state in (State.READING, State.ENDING, State.LINGERING)

    def wants_write(self):
        # Only while there is something to write: a socket is almost always
        # writable, and asking anyway would make select() return at once,
        # forever.
        return self.unsent() > 0

    # -- reading ----------------------------------------------------------

    def on_readable(self):
        try:
            data = self.sock.recv(READ_CHUNK)
        except BlockingIOError:
            return                  # a spurious wakeup; select() will tell us again
        except CLIENT_ERRORS:
            self.advance(Event.FAILED)
            return
        if self.state is State.READING:
            self.take(data)
        elif not data:              # ENDING or LINGERING: only the EOF matters
            self.advance(Event.EOF)

    def take(self, data):
        """Echoes the complete lines of partial + data; acts on the first
        `quit` or too-long line; keeps an unfinished line for later."""
        if not data:
            # The client shut down its writing half: its last fragment (at
            # most 8192 bytes, a longer one was refused already) goes back as is.
            self.out += self.partial
            self.partial = b""
            self.advance(Event.EOF)
            return
        buf = self.partial + data if self.partial else data
        quit_at = find_quit(buf, len(buf))
        # Only lines before a `quit` count: the connection ends there.
        long_at = find_long_line(buf, quit_at if quit_at >= 0 else len(buf))
        if long_at >= 0:
            self.out += memoryview(buf)[:long_at]
            self.out += LONG_LINE_REPLY
            self.end()
        elif quit_at >= 0:
            self.out += memoryview(buf)[:quit_at]
            self.end()
        else:
            last_newline = buf.rfind(b"\n") + 1   # 0 when there is none
            self.out += memoryview(buf)[:last_newline]
            self.partial = buf[last_newline:]
            self.advance(Event.LINES)

    def end(self):
        """Starts the orderly end: whatever followed the trigger is dropped."""
        self.partial = b""
        self.advance(Event.END)

    # -- writing ----------------------------------------------------------

    def flush(self):
        """Sends as much as the socket takes, then lets the state machine see
        how much is left."""
        if self.state is State.DONE:
            return
        if self.unsent():
            try:
                with memoryview(self.out) as view:
                    self.sent += self.sock.send(view[self.sent:])
            except BlockingIOError:
                return
            except CLIENT_ERRORS:   # EPIPE, ECONNRESET: drop only this client
                self.advance(Event.FAILED)
                return
            self.compact()
        self.advance(Event.SENT)

    def compact(self):
        """Drops the sent prefix now and then, not after every send: deleting
        the front of a large buffer each time would copy it each time."""
        if self.sent == len(self.out):
            self.out.clear()
            self.sent = 0
        elif self.sent >= COMPACT_AT:
            del self.out[:self.sent]
            self.sent = 0


def refuse(sock):
    """Turns away a client whose fd select() cannot watch, at once and without
    touching anyone else: one try at the message (a fresh socket's send buffer
    is empty, so it fits), our FIN, close."""
    try:
        sock.send(SERVER_FULL_REPLY)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass                        # already gone: nothing to tell it
    sock.close()


class Server:
    def __init__(self, listener):
        self.listener = listener
        self.listen_fd = listener.fileno()
        self.conns = {}             # fd -> Conn; every fd is below FD_SETSIZE

    def run(self):
        while True:
            readers, writers = self.wait_lists()
            # No timeout: with nothing to do the process sleeps in select().
            # (Python retries select() itself after EINTR.)
            readable, writable, _ = select.select(readers, writers, [], None)
            for fd in readable:
                if fd == self.listen_fd:
                    self.accept_all()
                else:
                    self.conns[fd].on_readable()
            # Write right away after reading rather than waiting for the
            # write list: the socket usually has room, and this saves a trip
            # through select(). dict.fromkeys: each connection once, in order.
            for fd in dict.fromkeys(readable + writable):
                if fd != self.listen_fd:
                    self.conns[fd].flush()
            self.reap()

    def wait_lists(self):
        """The read and write lists, built from the states before every
        select(): select() remembers nothing between calls."""
        readers = [self.listen_fd]
        writers = []
        for fd, conn in self.conns.items():
            if conn.wants_read():
                readers.append(fd)
            if conn.wants_write():
                writers.append(fd)
        return readers, writers

    def reap(self):
        """Closes the finished connections. Done after the turn, not during
        it: a closed fd could be reused by accept() while select()'s answer
        still names it."""
        for fd in [fd for fd, conn in self.conns.items() if conn.state is State.DONE]:
            self.conns.pop(fd).sock.close()

    def accept_all(self):
        """Takes every pending connection: the backlog is emptied per wakeup."""
        while True:
            try:
                sock, _peer = self.listener.accept()
            except BlockingIOError:
                return
            except (ConnectionAbortedError, InterruptedError):
                continue            # that client gave up; try the next one
            except OSError as err:
                # Out of fds or memory: keep serving the clients we have.
                print(f"{PROG}: accept: {err}", file=sys.stderr)
                return
            # Accepted sockets do not inherit O_NONBLOCK from the listener.
            sock.setblocking(False)
            if sock.fileno() >= FD_SETSIZE:
                refuse(sock)
                continue
            self.conns[sock.fileno()] = Conn(sock)


def main():
    port = parse_port(sys.argv[1:])
    raise_fd_limit()
    listener = bind_loopback(port)
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    try:
        Server(listener).run()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
