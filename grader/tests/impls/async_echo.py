#!/usr/bin/env python3
"""async_echo in Python: a line echo server in which every connection is a
coroutine, on an executor and an epoll reactor written here (no asyncio).

It implements the "Echo servers" section of CONTRACT.md, the idle rule of the
"timeouts" section and the "async_echo" section from scratch, with nothing but
the standard library, to show that the grader grades the contract and not the
Rust reference.

    async_echo.py [--port PORT] [--idle-timeout-ms N]

Shape of the program, bottom up:

  Reactor   one epoll instance and a heap of timers. Every socket is
            registered once, for both directions, edge-triggered; each fd has
            a Source naming the task waiting to read it and the task waiting
            to write it. turn() sleeps in epoll_wait until readiness or the
            earliest live timer, and wakes exactly the tasks concerned.
  Executor  the tasks and a run queue of the woken ones. Only queued tasks
            are resumed; when the queue is empty it parks in the reactor.
  awaitables generator-based (types.coroutine): each one tries its system
            call and, when it would block, yields a request to the executor,
            ("read", fd), ("write", fd) or ("sleep", deadline), which records
            the task as waiting for it. Woken, it simply tries again.
  protocol  `async def chat_with_client`, top to bottom: read a chunk, echo
            its lines, stop at `quit` or a too-long line, the lingering close,
            the EOF, all under an idle timeout.
"""

import collections
import errno
import heapq
import math
import os
import resource
import select
import socket
import sys
import time
import types

PROG = os.path.basename(sys.argv[0])
USAGE = f"usage: {PROG} [--port PORT] [--idle-timeout-ms N]"

READ_CHUNK = 64 * 1024        # bytes asked for per recv()
MAX_LINE = 8192               # longest line, counting its \n
LONG_LINE_REPLY = b"ERR line too long\n"
BYE = b"BYE idle\n"
DEFAULT_IDLE_MS = 10_000
# epoll_wait takes an int of milliseconds; a far deadline is slept towards in
# steps of a day (one wake-up a day costs nothing).
MAX_WAIT_MS = 86_400_000

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
EPOLLRDHUP = select.EPOLLRDHUP
EPOLLET = select.EPOLLET
FAILED = select.EPOLLHUP | select.EPOLLERR
READABLE = EPOLLIN | EPOLLRDHUP | FAILED
WRITABLE = EPOLLOUT | FAILED

monotonic = time.monotonic
# accept() errors that only mean "not now": retried quietly.
RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


# ---------------------------------------------------------------------------
# The command line.

def usage_error(message):
    print(f"{PROG}: {message}\n{USAGE}", file=sys.stderr)
    sys.exit(2)


def fail(message):
    """A fatal error that is not a bug: one line on stderr, exit 1."""
    print(f"{PROG}: {message}", file=sys.stderr)
    sys.exit(1)


def parse_args(argv):
    """Returns (port, idle_ms); anything unexpected is a usage error."""
    values = {"--port": 0, "--idle-timeout-ms": DEFAULT_IDLE_MS}
    args = iter(argv)
    for arg in args:
        if arg in ("-h", "--help"):
            print(USAGE)
            sys.exit(0)
        name, eq, value = arg.partition("=")
        if name not in values:
            usage_error(f"unknown option '{arg}'" if arg.startswith("-")
                        else f"unexpected argument '{arg}'")
        if not eq:
            value = next(args, None)
            if value is None:
                usage_error(f"{name} needs a value")
        if not (value.isascii() and value.isdigit()):
            usage_error(f"bad value for {name}: '{value}'")
        values[name] = int(value)
    if values["--port"] > 65535:
        usage_error(f"bad value for --port: '{values['--port']}'")
    if values["--idle-timeout-ms"] == 0:
        usage_error("--idle-timeout-ms must be at least 1")
    return values["--port"], values["--idle-timeout-ms"]


def raise_fd_limit():
    """Thousands of clients need thousands of fds; the soft limit may be far
    below the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as err:
            print(f"{PROG}: cannot raise RLIMIT_NOFILE: {err}", file=sys.stderr)


# ---------------------------------------------------------------------------
# The runtime: tasks, timers, the reactor and the executor.

class Task:
    """A coroutine the executor drives. `queued` keeps a task that is woken
    twice (its socket and its timer) from being queued twice; `done` makes
    any later wake-up (a waker that outlived its task) a no-op."""

    __slots__ = ("coro", "queued", "done")

    def __init__(self, coro):
        self.coro = coro
        self.queued = False
        self.done = False


class Timer:
    """A wake-up of `task` at `deadline`. It names the task, never an fd: a
    timer outliving its connection cannot touch whoever gets the fd next.
    `task` is None once the timer fired or was cancelled."""

    __slots__ = ("deadline", "task")

    def __init__(self, deadline, task):
        self.deadline = deadline
        self.task = task

    def live(self):
        return self.task is not None


class Source:
    """The tasks waiting on one registered fd, one per direction."""

    __slots__ = ("reader", "writer")

    def __init__(self):
        self.reader = None
        self.writer = None


class Reactor:
    def __init__(self, wake):
        self.wake = wake
        try:
            self.epoll = select.epoll()
        except OSError as err:
            fail(f"epoll_create1: {err.strerror or err}")
        self.sources = {}           # fd -> Source, for registered fds only
        self.heap = []              # (deadline, seq, Timer), earliest first
        self.seq = 0                # ties broken by arming order
        self.dead = 0               # cancelled timers still in the heap

    # -- fds --------------------------------------------------------------

    def register(self, fd):
        """One registration per fd, for its whole life: both directions,
        edge-triggered. An edge only says that trying again is worthwhile;
        since every awaitable tries before it waits, none can be missed."""
        self.epoll.register(fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)
        self.sources[fd] = Source()

    def deregister(self, fd):
        """Forgets fd (before it is closed): its waiters are dropped, so a
        socket that gets the same fd next starts with none."""
        if self.sources.pop(fd, None) is not None:
            try:
                self.epoll.unregister(fd)
            except OSError:
                pass

    def wait(self, kind, fd, task):
        source = self.sources.get(fd)
        if source is None:
            # Not registered (closed under the task): let it find out itself.
            self.wake(task)
        elif kind == "read":
            source.reader = task
        else:
            source.writer = task

    # -- timers -----------------------------------------------------------

    def add_timer(self, deadline, task):
        timer = Timer(deadline, task)
        self.seq += 1
        heapq.heappush(self.heap, (deadline, self.seq, timer))
        return timer

    def cancel_timer(self, timer):
        """A cancelled timer stays in the heap, skipped when it comes up;
        when they are the majority the heap is rebuilt, so that short
        connections with long timeouts do not grow it for ever."""
        if timer.task is None:
            return
        timer.task = None
        self.dead += 1
        if self.dead > 1024 and self.dead * 2 > len(self.heap):
            self.heap = [entry for entry in self.heap if entry[2].task is not None]
            heapq.heapify(self.heap)
            self.dead = 0

    def next_deadline(self):
        """The earliest live timer's deadline, or None."""
        heap = self.heap
        while heap:
            entry = heap[0]
            if entry[2].task is not None:
                return entry[0]
            heapq.heappop(heap)
            self.dead -= 1
        return None

    # -- the wait ---------------------------------------------------------

    def turn(self):
        """Sleeps until an fd is ready or the earliest timer is due, then
        wakes the tasks concerned (waking only queues them)."""
        deadline = self.next_deadline()
        if deadline is None:
            timeout = -1            # no timer: only readiness can wake us
        else:
            # Rounded up: rounding down would wake just before the deadline,
            # find nothing due and wait again, a busy loop in its last ms.
            ms = math.ceil((deadline - monotonic()) * 1000.0)
            timeout = min(max(ms, 0), MAX_WAIT_MS) / 1000.0
        # Python retries epoll_wait itself after EINTR (PEP 475).
        events = self.epoll.poll(timeout)
        wake = self.wake
        sources = self.sources
        for fd, flags in events:
            source = sources.get(fd)
            if source is None:
                continue
            if flags & READABLE and source.reader is not None:
                task, source.reader = source.reader, None
                wake(task)
            if flags & WRITABLE and source.writer is not None:
                task, source.writer = source.writer, None
                wake(task)
        heap = self.heap
        if heap:
            now = monotonic()
            while heap and heap[0][0] <= now:
                timer = heapq.heappop(heap)[2]
                if timer.task is None:
                    self.dead -= 1
                else:
                    task, timer.task = timer.task, None
                    wake(task)


class Executor:
    """Runs tasks one step at a time: a step resumes a task's coroutine until
    it yields its next request. The run queue holds only woken tasks, so the
    work per wake-up is that of the tasks woken, however many exist."""

    def __init__(self):
        self.queue = collections.deque()
        self.reactor = Reactor(self.wake)
        self.current = None         # the task being stepped

    def spawn(self, coro):
        task = Task(coro)
        self.wake(task)             # a new task runs once to start
        return task

    def wake(self, task):
        if not task.queued and not task.done:
            task.queued = True
            self.queue.append(task)

    def run(self):
        queue = self.queue
        step = self.step
        turn = self.reactor.turn
        while True:
            # Only what is queued now: tasks woken by this round run in the
            # next one, after the reactor has looked at the fds again.
            for _ in range(len(queue)):
                task = queue.popleft()
                task.queued = False
                step(task)
            if not queue:
                turn()

    def step(self, task):
        self.current = task
        try:
            request = task.coro.send(None)
        except StopIteration:
            task.done = True
            return
        except Exception as err:  # a bug in one task must not end the server
            task.done = True
            print(f"{PROG}: task failed: {err!r}", file=sys.stderr)
            return
        finally:
            self.current = None
        kind, arg = request
        if kind == "read" or kind == "write":
            self.reactor.wait(kind, arg, task)
        elif kind == "sleep":
            self.reactor.add_timer(arg, task)
        else:
            task.done = True
            task.coro.close()
            print(f"{PROG}: unknown request {request!r}", file=sys.stderr)


RUNTIME = None  # the Executor, set in main(); like a thread-local runtime


# ---------------------------------------------------------------------------
# Awaitables.

@types.coroutine
def sleep_until(deadline):
    # Any wake-up before the deadline is spurious: sleep again.
    while monotonic() < deadline:
        yield ("sleep", deadline)


class AsyncSocket:
    """A non-blocking socket registered with the reactor. Each operation
    tries the system call first and waits only when it would block."""

    __slots__ = ("sock", "fd")

    def __init__(self, sock):
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        RUNTIME.reactor.register(self.fd)

    @types.coroutine
    def accept(self):
        while True:
            try:
                sock, _peer = self.sock.accept()
                break
            except BlockingIOError:
                yield ("read", self.fd)
        try:
            return AsyncSocket(sock)
        except OSError:
            sock.close()
            raise

    @types.coroutine
    def recv(self, size):
        while True:
            try:
                return self.sock.recv(size)
            except BlockingIOError:
                yield ("read", self.fd)

    @types.coroutine
    def send(self, data):
        """Sends some of data (waiting until the socket takes any): how much."""
        while True:
            try:
                return self.sock.send(data)
            except BlockingIOError:
                yield ("write", self.fd)

    def try_send(self, data):
        """One attempt, never waiting; errors ignored."""
        try:
            self.sock.send(data)
        except OSError:
            pass

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        RUNTIME.reactor.deregister(self.fd)
        self.sock.close()


class IdleTimeout:
    """Runs a coroutine until it returns, or until `idle` seconds have passed
    since conn.last_activity (which the coroutine moves on with every byte),
    whichever comes first. Awaiting it gives True when the coroutine finished,
    False when the connection went idle (the coroutine is then closed).

    One timer per connection and idle period, not one per byte: it is armed
    at the deadline as it stands; when it fires, the deadline is computed
    again from the last activity, and either it has passed or a timer is
    armed for the new one. The timer is cancelled whenever this ends."""

    __slots__ = ("conn", "idle", "coro")

    def __init__(self, conn, idle, coro):
        self.conn = conn
        self.idle = idle
        self.coro = coro

    def __await__(self):
        coro = self.coro
        reactor = RUNTIME.reactor
        timer = None
        try:
            while True:
                # The coroutine goes first: if bytes are waiting, the
                # connection is not idle, whatever woke the task.
                try:
                    request = coro.send(None)
                except StopIteration:
                    return True
                now = monotonic()
                deadline = self.conn.last_activity + self.idle
                if now >= deadline:
                    coro.close()
                    return False
                if timer is None or not timer.live():
                    # (A live timer fires no later than the deadline, which
                    # only moves forward; when it fires we look again.)
                    timer = reactor.add_timer(deadline, RUNTIME.current)
                yield request
        finally:
            if timer is not None:
                reactor.cancel_timer(timer)
            coro.close()


# ---------------------------------------------------------------------------
# The protocol.

def find_quit(buf, end):
    """Start of the first line in buf[:end] that is `quit\\n` or `quit\\r\\n`,
    or -1. buf starts at the start of a line."""
    pos = buf.find(b"quit", 0, end)
    while pos >= 0:
        if pos == 0 or buf[pos - 1] == 0x0A:
            after = buf[pos + 4:pos + 6]
            if after[:1] == b"\n" or after == b"\r\n":
                return pos
        pos = buf.find(b"quit", pos + 1, end)
    return -1


def find_long_line(buf, end):
    """Start of the first line in buf[:end] that has no \\n in its first
    MAX_LINE bytes although more bytes follow them, or -1. buf starts at the
    start of a line. Each step jumps over all the lines of an 8 KiB window."""
    start = 0
    while end - start > MAX_LINE:
        newline = buf.rfind(b"\n", start, start + MAX_LINE)
        if newline < 0:
            return start
        start = newline + 1
    return -1


class Conn:
    """One client, and the instant a byte last moved on it."""

    __slots__ = ("sock", "last_activity")

    def __init__(self, sock):
        self.sock = sock
        self.last_activity = monotonic()   # timed from accept

    async def recv(self):
        data = await self.sock.recv(READ_CHUNK)
        self.last_activity = monotonic()
        return data

    async def send_all(self, data):
        """Awaiting the whole write is the backpressure: while the client does
        not read, this connection is not read either, so its bytes wait in
        the kernel's buffers and its own writes block."""
        with memoryview(data) as view:
            while view:
                sent = await self.sock.send(view)
                self.last_activity = monotonic()
                view = view[sent:]


async def converse(conn):
    """Echo lines until `quit`, a too-long line, the client's EOF or an error."""
    partial = b""                   # the start of a line with no \n yet
    while True:
        try:
            data = await conn.recv()
        except OSError:
            return                  # reset: drop this connection only
        if not data:
            # End of input: the unterminated fragment goes back as it is.
            if partial:
                try:
                    await conn.send_all(partial)
                except OSError:
                    pass
            return
        buf = partial + data if partial else data
        quit_at = find_quit(buf, len(buf))
        long_at = find_long_line(buf, quit_at if quit_at >= 0 else len(buf))
        if long_at >= 0:
            reply, ending = buf[:long_at] + LONG_LINE_REPLY, True
        elif quit_at >= 0:
            reply, ending = buf[:quit_at], True
        else:
            cut = buf.rfind(b"\n") + 1
            reply, ending, partial = buf[:cut], False, buf[cut:]
        try:
            if reply:
                await conn.send_all(reply)
        except OSError:
            return
        if ending:
            await linger(conn)
            return


async def linger(conn):
    """The lingering close: our FIN, then read and discard until the client's
    EOF, so that its unread bytes never turn our close into a reset."""
    try:
        conn.sock.shutdown_write()
        while await conn.recv():
            pass
    except OSError:
        pass


async def chat_with_client(sock, idle):
    conn = Conn(sock)
    try:
        if not await IdleTimeout(conn, idle, converse(conn)):
            # One attempt, not waited for: an idle client may not be reading.
            sock.try_send(BYE)
    finally:
        sock.close()


async def serve(listener, idle):
    """Accepts connections for ever, one task each."""
    while True:
        try:
            sock = await listener.accept()
        except (ConnectionAbortedError, InterruptedError):
            continue                # that client gave up
        except OSError as err:
            # Out of fds or memory (or stranger): the pending client waits in
            # the backlog; try again a little later instead of spinning (no
            # new edge would come for it anyway).
            if err.errno not in RESOURCE_ERRORS:
                print(f"{PROG}: accept: {err.strerror or err}", file=sys.stderr)
            await sleep_until(monotonic() + 0.1)
            continue
        RUNTIME.spawn(chat_with_client(sock, idle))


# ---------------------------------------------------------------------------

def bind_loopback(port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
        listener.listen(socket.SOMAXCONN)
    except OSError as err:
        fail(f"cannot listen on 127.0.0.1:{port}: {err.strerror or err}")
    return listener


def main():
    global RUNTIME
    port, idle_ms = parse_args(sys.argv[1:])
    raise_fd_limit()
    RUNTIME = Executor()
    listener = bind_loopback(port)
    try:
        # Registered before the line is printed: everything exists once the
        # server says it is listening.
        alistener = AsyncSocket(listener)
    except OSError as err:
        fail(f"cannot register the listener: {err.strerror or err}")
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    RUNTIME.spawn(serve(alistener, idle_ms / 1000.0))
    try:
        RUNTIME.run()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
