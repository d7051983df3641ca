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
@pytest.mark.no_database  # a stand-in app: the gateway's backend plays no part
def test_each_gevent_worker_accepts_its_share_of_the_queue_per_wake_up(tmp_path):
    """gunicorn's gevent worker accepts one connection per wake-up when there are several workers;
    the gateway's worker class accepts the worker's share of the listen queue instead, in every worker."""
    import requests

    from kyma import procs

    sock = procs.listen()
    probe = sock.dup()  # the same listen queue, to see it fill; never accepted from here
    server = procs.start("tests.accept_app:app", sock, dict(os.environ), log=tmp_path / "accept.log", workers=2)
    held_pids, releases = [tmp_path / "held-a.pid", tmp_path / "held-b.pid"], [tmp_path / "a", tmp_path / "b"]
    queued: list[socket.socket] = []
    try:
        server.wait_ready("/")
        with ThreadPoolExecutor(2) as pool:
            holds = []
            for pid_file, release in zip(held_pids, releases):
                # The first hold blocks one worker's event loop, so the other worker takes the second.
                holds.append(pool.submit(requests.get, f"{server.url}/hold",
                                         params={"pid_file": str(pid_file), "release": str(release)}, timeout=60))
                deadline = time.monotonic() + 30
                while not pid_file.exists() and time.monotonic() < deadline and not holds[-1].done():
                    time.sleep(0.01)
                assert pid_file.exists(), "no worker took the hold"
            # Both workers are held: these connections wait in the listen queue.
            queued = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(6)]
            deadline = time.monotonic() + 10
            while worker.accept_share(probe, 1) < 6 and time.monotonic() < deadline:
                time.sleep(0.01)  # the kernel queues each connection as its handshake completes
            assert worker.accept_share(probe, 1) == 6
            releases[0].touch()  # the first worker reads its share before its event loop accepts any
            first = holds[0].result().json()
            for c in queued:
                c.close()
            releases[1].touch()
            second = holds[1].result().json()
        assert [first["pid"], second["pid"]] == [int(p.read_text()) for p in held_pids]  # one worker each
        assert first["pid"] != second["pid"]
        # Six queued between two workers: a wake-up takes three (gunicorn's gevent worker takes one).
        assert first["servers"] == [["ShareAcceptServer", 2, 3]], first
        assert [s[:2] for s in second["servers"]] == [["ShareAcceptServer", 2]], second
    finally:
        for c in queued:
            c.close()
        probe.close()
        for release in releases:
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
