"""Test servers forked from one process that has already imported gunicorn, gevent and the gateway.

A gunicorn started by `python -m gunicorn` spends most of the CPU a test's short-lived server ever uses
importing: gunicorn and gevent in the master, then Flask, peewee, psycopg and the gateway in each
worker, and the tests start many such servers. So each pytest process
keeps one zygote: a process that patches with gevent first, as a worker would, imports all of that
once, then forks a gunicorn master per request. The master runs gunicorn's own command line on
sockets and a log handed over with SCM_RIGHTS, leads its own session, and dies with the zygote, which
dies with pytest.

What differs from `python -m gunicorn` is only what was imported before the fork, and the master
being patched too, as with a wrapper script that patches before it hands over to gunicorn. The
command a user runs (`make run`, kyma.launcher) still starts gunicorn by exec, and its tests do too.

`spawn()` takes subprocess.Popen's arguments as kyma.procs.start passes them and falls back to
Popen for anything the zygote cannot reproduce: another working directory or interpreter settings,
or a command that is not this interpreter's gunicorn; KYMA_TEST_ZYGOTE=off makes it always do so.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Read by the interpreter at start-up or by gevent at import: a server whose environment sets them
# differently from this process must be started by exec.
STARTUP_VARIABLES = ("PYTHON", "GEVENT", "PROMETHEUS_MULTIPROC_DIR")
_STATUS = struct.Struct("i")
_MAX_MESSAGE = 1 << 20
_MAX_FDS = 64


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
            # No status at all: the zygote is gone, and the master with it (it dies with its parent).
            self.returncode = _STATUS.unpack(data)[0] if len(data) == _STATUS.size else -signal.SIGTERM
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _ready(self, timeout: float | None) -> bool:
        return bool(select.select([self._status_fd], [], [], timeout)[0])


class Zygote:
    """The parent's end: starts the zygote on first use and asks it for servers."""

    def __init__(self):
        self._lock = threading.Lock()
        self._channel: socket.socket | None = None
        self._process: subprocess.Popen | None = None
        self._interpreter = {k: v for k, v in os.environ.items() if k.startswith(STARTUP_VARIABLES)}

    def spawn(self, command: list[str], *, cwd, env: dict, stdout=None, stderr=None, pass_fds=(),
              start_new_session: bool = False, preexec_fn=None):
        """A ForkedServer running `command`, or a subprocess.Popen when the zygote cannot reproduce it."""
        if not self._can_fork(command, cwd, env, stderr):
            return subprocess.Popen(command, cwd=cwd, env=env, stdout=stdout, stderr=stderr, pass_fds=pass_fds,
                                    start_new_session=start_new_session, preexec_fn=preexec_fn)
        read_end, write_end = os.pipe()
        fds = [write_end, *pass_fds] + ([stdout.fileno()] if stdout is not None else [])
        request = {"argv": command[3:], "env": env, "fds": list(pass_fds), "log": stdout is not None}
        try:
            with self._lock:
                channel = self._start()
                socket.send_fds(channel, [json.dumps(request).encode()], fds)
                reply = channel.recv(64)
        finally:
            os.close(write_end)
        if not reply:
            os.close(read_end)
            raise RuntimeError("the test zygote exited; see pytest's output for why")
        return ForkedServer(command, int(reply), read_end)

    def _can_fork(self, command: list[str], cwd, env: dict, stderr) -> bool:
        same_interpreter = {k: v for k, v in env.items() if k.startswith(STARTUP_VARIABLES)} == self._interpreter
        return (os.environ.get("KYMA_TEST_ZYGOTE", "on") != "off" and same_interpreter
                and command[:3] == [sys.executable, "-m", "gunicorn"] and Path(cwd).resolve() == ROOT
                and stderr in (None, subprocess.STDOUT))

    def _start(self) -> socket.socket:
        if self._channel is None or self._process.poll() is not None:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            # It ends when its channel does, however this process ends (not with the thread that started it,
            # as a parent-death signal would).
            self._process = subprocess.Popen([sys.executable, "-m", "tests.zygote", str(theirs.fileno())],
                                             cwd=ROOT, stdin=subprocess.DEVNULL, pass_fds=[theirs.fileno()])
            theirs.close()
            self._channel = ours
        return self._channel


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
    """The functions gevent patched over, as they were: the zygote never runs gevent's hub (so a forked
    master inherits no loop), and gevent's own os.close would wait for that hub to close anything."""

    def __init__(self):
        from gevent.monkey import get_original

        self.select, self.fork, self.waitpid, self.close, self.signal = (
            get_original(module, name) for module, name in
            (("select", "select"), ("os", "fork"), ("os", "waitpid"), ("os", "close"), ("signal", "signal")))


def _serve(channel: socket.socket) -> None:
    """Fork a master for each request; report each one's exit status as soon as it is reaped."""
    from kyma.procs import die_with_parent

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
            message, fds, _, _ = socket.recv_fds(channel, _MAX_MESSAGE, _MAX_FDS)
            if not message:
                return  # pytest is gone: the masters die with this process
            pid = unpatched.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGCHLD, signal.SIGINT):
                    unpatched.signal(sig, signal.SIG_DFL)
                for fd in (woken, wake, *status_fds.values()):
                    unpatched.close(fd)
                channel.close()
                _child(json.loads(message), fds, die_with_parent, unpatched.close)
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
            os.write(fd, _STATUS.pack(os.waitstatus_to_exitcode(status)))
            unpatched.close(fd)


def _child(request: dict, fds: list[int], die_with_parent, close) -> None:
    """In the forked master: become the server `request` names, and never return to the loop."""
    code = 1
    try:
        os.setsid()
        die_with_parent()
        close(fds[0])
        sockets = fds[1:1 + len(request["fds"])]
        if request["log"]:
            os.dup2(fds[-1], 1)
            os.dup2(fds[-1], 2)
            close(fds[-1])
        # The parent's descriptor numbers in the command become this process's.
        renumber = {f"fd://{theirs}": f"fd://{ours}" for theirs, ours in zip(request["fds"], sockets)}
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["gunicorn", *(renumber.get(arg, arg) for arg in request["argv"])]
        from gunicorn.app.wsgiapp import run

        run(prog="gunicorn")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    channel = socket.socket(fileno=int(sys.argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is pytest's to handle
    _preload()
    _serve(channel)


if __name__ == "__main__":
    main()
