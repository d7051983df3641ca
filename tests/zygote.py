"""Test servers forked from one process that has already imported gunicorn, gevent and the gateway.

A gunicorn started by `python -m gunicorn` spends most of the CPU a test's short-lived server ever uses
importing: gunicorn and gevent in the master, then Flask, peewee, psycopg and the gateway in each
worker, and the tests start many such servers. So each pytest process keeps one zygote: a process
that patches with gevent first, as a worker would, imports all of that once, then forks a gunicorn
master per request. The master runs gunicorn's own command line on sockets and a log handed over with
SCM_RIGHTS and leads its own session. When pytest ends, the zygote stops and reaps the masters still
running, and pytest waits for it (so `time` counts their CPU); a master also dies with the zygote.

What differs from `python -m gunicorn`: what was imported before the fork; the master being patched
too, as with a wrapper script that patches before it hands over to gunicorn; the hash seed, locale and
time zone the zygote started with; and an exit by os._exit once the exit handlers ran (no module
teardown). The command a user runs (`make run`, kyma.launcher) still starts gunicorn by exec, and its
tests do too.

`spawn()` takes subprocess.Popen's arguments as kyma.procs.start passes them and falls back to
Popen for anything the zygote cannot reproduce: another working directory or interpreter settings,
or a command that is not this interpreter's gunicorn; KYMA_TEST_ZYGOTE=off makes it always do so.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from contextlib import suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Read by the interpreter at start-up or by gevent at import: a server whose environment sets them
# differently from this process must be started by exec.
STARTUP_VARIABLES = ("PYTHON", "GEVENT")
_STATUS = struct.Struct("i")
_MAX_MESSAGE = 1 << 20
_MAX_FDS = 64
END_GRACE = 10  # seconds the zygote gives its masters to stop when pytest ends


class ForkedServer:
    """What kyma.procs needs of a Popen, for a gunicorn master the zygote forked."""

    def __init__(self, args: list[str], pid: int, status_fd: int):
        self.args, self.pid, self.returncode = args, pid, None
        self._status_fd = status_fd  # the zygote writes the exit status here once it has reaped the master

    def poll(self) -> int | None:
        """The exit status once the master has exited, else None."""
        return self.wait(0) if self.returncode is None and self._ready(0) else self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the master to exit (subprocess.TimeoutExpired after `timeout` seconds)."""
        if self.returncode is None:
            if not self._ready(timeout):
                raise subprocess.TimeoutExpired(self.args, timeout)
            data = os.read(self._status_fd, _STATUS.size)
            os.close(self._status_fd)
            # No status at all: the zygote is gone, and its death signal has reached the master.
            self.returncode = _STATUS.unpack(data)[0] if len(data) == _STATUS.size else -signal.SIGTERM
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """As Popen's: nothing once the master has exited."""
        if self.poll() is None:
            with suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _ready(self, timeout: float | None) -> bool:
        poller = select.poll()  # not select(): a pytest process may hold more than 1024 descriptors
        poller.register(self._status_fd, select.POLLIN)
        return bool(poller.poll(None if timeout is None else max(0, timeout) * 1000))


class Zygote:
    """The parent's end: starts the zygote on first use and asks it for servers."""

    def __init__(self):
        self._lock = threading.Lock()
        self._channel: socket.socket | None = None
        self._process: subprocess.Popen | None = None
        self._interpreter = {k: v for k, v in os.environ.items() if k.startswith(STARTUP_VARIABLES)}
        # Waited for as this process exits, so that its CPU and its servers' count in this process's own.
        atexit.register(self._stop)

    def spawn(self, command: list[str], *, cwd=None, env: dict | None = None, stdout=None, stderr=None, pass_fds=(),
              start_new_session: bool = False, preexec_fn=None):
        """A ForkedServer running `command`, or a subprocess.Popen when the zygote cannot reproduce it.

        A forked master always leads its own session and dies with the zygote, as kyma.procs.start asks.
        """
        if not self._can_fork(command, cwd, env, stdout, stderr, start_new_session, preexec_fn):
            return subprocess.Popen(command, cwd=cwd, env=env, stdout=stdout, stderr=stderr, pass_fds=pass_fds,
                                    start_new_session=start_new_session, preexec_fn=preexec_fn)
        given = [*pass_fds] + ([stdout.fileno()] if stdout is not None else [])
        read_end, write_end = os.pipe()
        fds = [write_end, *given]
        request = {"argv": command[3:], "env": env, "fds": list(pass_fds), "log": stdout is not None}
        try:
            with self._lock:
                reply = self._ask(json.dumps(request).encode(), fds)
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        if not reply.isdigit():
            os.close(read_end)
            if not reply:
                self._stop()
            raise RuntimeError(f"the test zygote could not start the server: {reply or 'it exited'}")
        return ForkedServer(command, int(reply), read_end)

    def _can_fork(self, command: list[str], cwd, env, stdout, stderr, start_new_session: bool, preexec_fn) -> bool:
        from kyma.procs import die_with_parent

        if (os.environ.get("KYMA_TEST_ZYGOTE", "on") == "off" or env is None or not start_new_session
                or preexec_fn not in (None, die_with_parent)):  # the master always runs die_with_parent
            return False
        same_interpreter = {k: v for k, v in env.items() if k.startswith(STARTUP_VARIABLES)} == self._interpreter
        output_as_asked = (stdout is None and stderr is None) or (
            hasattr(stdout, "fileno") and stderr == subprocess.STDOUT)  # a log file for both, or this process's
        return (same_interpreter and output_as_asked and command[:3] == [sys.executable, "-m", "gunicorn"]
                and Path(cwd or os.getcwd()).resolve() == ROOT)

    def _ask(self, message: bytes, fds: list[int]) -> str:
        """One request and its reply. A request sent whose reply is not read replaces the zygote, so that
        no later request can read that reply (a failed send sent nothing)."""
        channel = self._start()
        socket.send_fds(channel, [message], fds)
        try:
            return channel.recv(256).decode(errors="replace")
        except BaseException:
            self._stop()
            raise

    def _start(self) -> socket.socket:
        if self._channel is None or self._process.poll() is not None:
            self._stop()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            # Its interpreter settings are this module's snapshot, whatever a test has set since.
            env = {**{k: v for k, v in os.environ.items() if not k.startswith(STARTUP_VARIABLES)},
                   **self._interpreter}
            # It ends when its channel does, however this process ends (not with the thread that started it,
            # as a parent-death signal would).
            self._process = subprocess.Popen([sys.executable, "-m", "tests.zygote", str(theirs.fileno())],
                                             cwd=ROOT, env=env, stdin=subprocess.DEVNULL, pass_fds=[theirs.fileno()])
            theirs.close()
            self._channel = ours
        return self._channel

    def _stop(self) -> None:
        """Close the channel and wait for the zygote, which stops its masters first (it is killed itself
        if it takes longer than it gives them)."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._process is not None:
            try:
                self._process.wait(END_GRACE + 10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


ZYGOTE = Zygote()


def spawn(command: list[str], **popen_arguments):
    """kyma.procs.start's spawner for test servers: forked from this process's zygote where it can be."""
    return ZYGOTE.spawn(command, **popen_arguments)


# --- the zygote itself -------------------------------------------------------------------------------

def _preload() -> None:
    """Patch as a gevent worker does, then import what every master and worker would import."""
    from gevent import monkey

    monkey.patch_all()
    import pkgutil
    from importlib import import_module

    import gunicorn.app.wsgiapp  # noqa: F401  (what the master imports)
    import gunicorn.arbiter  # noqa: F401
    import kyma

    for module in pkgutil.walk_packages(kyma.__path__, "kyma."):
        import_module(module.name)
    # Chosen at import from the environment of the server that imports it: each one must do that itself.
    assert "prometheus_client" not in sys.modules, "prometheus_client must be imported by each server"


class _Unpatched:
    """The functions gevent patched over, as they were: the zygote never waits through gevent's hub,
    and gevent's own os.close would leave to that hub the closing of anything it might watch."""

    def __init__(self):
        from gevent.monkey import get_original

        self.select, self.fork, self.waitpid, self.close, self.signal, self.sleep = (
            get_original(module, name) for module, name in
            (("select", "select"), ("os", "fork"), ("os", "waitpid"), ("os", "close"), ("signal", "signal"),
             ("time", "sleep")))


def _serve(channel: socket.socket) -> None:
    """Fork a master for each request; report each one's exit status as soon as it is reaped."""
    unpatched = _Unpatched()
    woken, wake = os.pipe()  # a byte arrives here with each SIGCHLD, so select() returns at once
    os.set_blocking(wake, False)
    signal.set_wakeup_fd(wake)
    unpatched.signal(signal.SIGCHLD, lambda *_: None)
    status_fds: dict[int, int] = {}
    while True:
        readable = unpatched.select([channel, woken], [], [])[0]
        if woken in readable:
            os.read(woken, 4096)
            _reap(status_fds, unpatched)
        if channel in readable:
            message, fds, flags, _ = socket.recv_fds(channel, _MAX_MESSAGE, _MAX_FDS)
            if not message:  # pytest is done: its servers go with it, and are reaped here
                _end(status_fds, unpatched)
                return
            try:
                if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                    raise OSError("the request or its descriptors were cut short")
                sys.stdout.flush()  # nothing of this process's buffers may be written again by a child
                sys.stderr.flush()
                pid = unpatched.fork()
            except OSError as exc:
                for fd in fds:
                    unpatched.close(fd)
                channel.send(str(exc).encode()[:256])
                continue
            if pid == 0:
                _child(message, fds, channel, (woken, wake, *status_fds.values()), unpatched)
            status_fds[pid] = fds[0]
            for fd in fds[1:]:
                unpatched.close(fd)
            channel.send(str(pid).encode())
            _reap(status_fds, unpatched)  # one that exited before it was listed


def _reap(status_fds: dict[int, int], unpatched: _Unpatched) -> None:
    while status_fds:
        try:
            pid, status = unpatched.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = status_fds.pop(pid, None)
        if fd is not None:
            with suppress(OSError):  # the test that started it has closed its end: no one is waiting
                os.write(fd, _STATUS.pack(os.waitstatus_to_exitcode(status)))
            unpatched.close(fd)


def _end(status_fds: dict[int, int], unpatched: _Unpatched, grace: float = END_GRACE) -> None:
    """Stop the masters still running (gunicorn's quick shutdown) and reap them; after `grace` seconds,
    kill what is left, each master with its workers (its own process group), as kyma.procs.stop does."""
    import time

    phases = ((lambda pid: os.kill(pid, signal.SIGINT), grace), (lambda pid: os.killpg(pid, signal.SIGKILL), 5))
    for send, wait in phases:
        for pid in status_fds:
            with suppress(ProcessLookupError):
                send(pid)
        deadline = time.monotonic() + wait
        while status_fds and time.monotonic() < deadline:
            _reap(status_fds, unpatched)
            unpatched.sleep(0.05)


def _child(message: bytes, fds: list[int], channel: socket.socket, zygote_fds, unpatched: _Unpatched) -> None:
    """In the forked master: become the server `message` names, and never return to the zygote's loop."""
    code = 1
    try:
        import gevent

        gevent.reinit()  # the zygote's imports made gevent's hub: this process's loop must be its own
        signal.set_wakeup_fd(-1)
        unpatched.signal(signal.SIGCHLD, signal.SIG_DFL)  # as a new interpreter has them
        unpatched.signal(signal.SIGINT, signal.default_int_handler)
        channel.close()
        for fd in (*zygote_fds, fds[0]):
            unpatched.close(fd)
        request = json.loads(message)
        os.setsid()
        from kyma.procs import die_with_parent

        die_with_parent()
        sockets = fds[1:1 + len(request["fds"])]
        if request["log"]:
            os.dup2(fds[-1], 1)
            os.dup2(fds[-1], 2)
            unpatched.close(fds[-1])
        # The parent's descriptor numbers in the command become this process's.
        renumber = {f"fd://{theirs}": f"fd://{ours}" for theirs, ours in zip(request["fds"], sockets)}
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["gunicorn", *(renumber.get(arg, arg) for arg in request["argv"])]
        from gunicorn.app.wsgiapp import run

        run(prog="gunicorn")
        code = 0
    except SystemExit as exc:  # a master's or (unwinding through here) one of its workers' exit
        if isinstance(exc.code, int) or exc.code is None:
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        _exit(code)


def _exit(code: int) -> None:
    """End a forked process as an interpreter would, but for module teardown: exit handlers, then output."""
    import atexit

    with suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with suppress(BaseException):
            stream.flush()
    os._exit(code)


def main() -> None:
    channel = socket.socket(fileno=int(sys.argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is pytest's to handle
    _preload()
    _serve(channel)


if __name__ == "__main__":
    main()
