"""The gateway's gunicorn worker: selected by the gunicorn config, it accepts its share of the listen queue."""

from __future__ import annotations

import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from gunicorn.workers.ggevent import GeventWorker

from kyma import worker
from kyma.procs import gunicorn_command


@pytest.mark.integration
def test_each_gevent_worker_accepts_its_share_of_the_queue_per_wake_up(tmp_path):
    """gunicorn's gevent worker accepts one connection per wake-up when there are several workers;
    the gateway's worker class accepts the worker's share of the listen queue instead, in every worker."""
    import requests

    from kyma import procs

    server = procs.start("tests.accept_app:app", procs.listen(), dict(os.environ), log=tmp_path / "accept.log",
                         workers=2)
    held_pid, release = tmp_path / "held.pid", tmp_path / "release"
    try:
        server.wait_ready("/")
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(requests.get, f"{server.url}/hold",
                               params={"pid_file": str(held_pid), "release": str(release)}, timeout=60)
            deadline = time.monotonic() + 30
            while not held_pid.exists() and time.monotonic() < deadline and not held.done():
                time.sleep(0.01)
            assert held_pid.exists(), "no worker took the hold"
            # One worker is held, its event loop blocked: the other takes this connection.
            other = requests.get(f"{server.url}/", timeout=10).json()
            release.touch()
            answers = [held.result().json(), other]
        seen = {answer["pid"]: answer["servers"] for answer in answers}
        assert len(seen) == 2 and int(held_pid.read_text()) in seen, seen  # both workers answered
        # Nothing else is queued while a worker answers: its share is one connection.
        assert all(servers == [["ShareAcceptServer", 2, 1]] for servers in seen.values()), seen
    finally:
        release.touch()
        server.stop()


def test_the_share_is_the_queue_split_between_the_workers():
    listener = socket.create_server(("127.0.0.1", 0), backlog=512)
    clients = []
    try:
        assert worker.accept_share(listener, 2) == 1  # nothing queued: one, as gunicorn would
        clients = [socket.create_connection(listener.getsockname()) for _ in range(5)]
        deadline = time.monotonic() + 5
        while worker.accept_share(listener, 1) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)  # the kernel queues each connection as its handshake completes
        assert [worker.accept_share(listener, n) for n in (1, 2, 4)] == [5, 3, 2]
        clients += [socket.create_connection(listener.getsockname()) for _ in range(200)]
        while worker.accept_share(listener, 1) < worker.ACCEPT_BATCH and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.accept_share(listener, 2) == worker.ACCEPT_BATCH  # a burst: never more than the cap
    finally:
        for c in clients:
            c.close()
        listener.close()
    a, b = socket.socketpair()  # no TCP_INFO: gunicorn's own choice
    try:
        assert worker.accept_share(a, 2) == 1 and worker.accept_share(a, 1) == worker.ACCEPT_BATCH
    finally:
        a.close()
        b.close()


def test_the_gunicorn_config_selects_the_worker_class_and_the_command_leaves_it():
    from kyma import gunicorn_hooks

    assert gunicorn_hooks.worker_class == gunicorn_hooks.WORKER == "kyma.worker.ShareAcceptWorker"
    assert issubclass(worker.ShareAcceptWorker, GeventWorker)
    cmd = gunicorn_command("app:app", "127.0.0.1:1", 2)
    assert cmd[cmd.index("-c") + 1] == str(gunicorn_hooks.PATH)
    assert "-k" not in cmd and "--worker-class" not in cmd  # either would override the config's choice
