"""Connections per worker: the setting, gunicorn's flags, and the open-file limit raised to fit."""

from __future__ import annotations

import os
import resource
import time

import pytest

from kyma import capacity
from kyma.config import Settings
from kyma.procs import gunicorn_command


def test_worker_connections_is_a_setting_passed_to_gunicorn_with_a_backlog(monkeypatch, tmp_path):
    monkeypatch.setenv("KYMA_WORKER_CONNECTIONS", "7000")
    settings = Settings.from_env({"instance_dir": tmp_path, "secret_key": "k"})
    assert settings.worker_connections == 7000
    cmd = gunicorn_command("app:app", "127.0.0.1:1", 2, connections=settings.worker_connections)
    assert cmd[cmd.index("--worker-connections") + 1] == "7000"
    assert int(cmd[cmd.index("--backlog") + 1]) >= 2048  # no smaller than gunicorn's own default
    monkeypatch.delenv("KYMA_WORKER_CONNECTIONS")
    assert capacity.worker_connections() == capacity.DEFAULT_WORKER_CONNECTIONS >= 4000
    with pytest.raises(ValueError, match="KYMA_WORKER_CONNECTIONS"):
        capacity.worker_connections({"KYMA_WORKER_CONNECTIONS": "0"})


class FakeLimits:
    def __init__(self, soft, hard):
        self.limits = (soft, hard)

    def get(self, which):
        assert which == resource.RLIMIT_NOFILE
        return self.limits

    def set(self, which, limits):
        assert which == resource.RLIMIT_NOFILE and limits[0] <= self.limits[1]
        self.limits = limits


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(monkeypatch, capsys):
    fake = FakeLimits(1024, 65536)
    monkeypatch.setattr(capacity.resource, "getrlimit", fake.get)
    monkeypatch.setattr(capacity.resource, "setrlimit", fake.set)
    limit = capacity.ensure_fd_limit(5000)
    assert fake.limits == (65536, 65536) and limit.enough
    assert limit.needed == capacity.fds_needed(5000) > 2 * 5000  # a client and an upstream socket each
    assert capsys.readouterr().err == ""


def test_a_hard_limit_too_low_says_what_the_operator_must_do(monkeypatch, capsys):
    fake = FakeLimits(1024, 4096)
    monkeypatch.setattr(capacity.resource, "getrlimit", fake.get)
    monkeypatch.setattr(capacity.resource, "setrlimit", fake.set)
    limit = capacity.ensure_fd_limit(5000)
    assert fake.limits == (4096, 4096) and not limit.enough
    err = capsys.readouterr().err
    assert "4096" in err and "LimitNOFILE" in err and "KYMA_WORKER_CONNECTIONS" in err


@pytest.mark.integration
def test_each_gevent_worker_accepts_its_share_of_the_queue_per_wake_up(tmp_path):
    """gunicorn's gevent worker accepts one connection per wake-up when there are several workers;
    the project's hooks make it the worker's share of the listen queue instead."""
    import requests

    from kyma import procs

    server = procs.start("tests.accept_app:app", procs.listen(), dict(os.environ), log=tmp_path / "accept.log",
                         workers=2)
    try:
        server.wait_ready("/")
        seen = {}
        for _ in range(40):  # both workers answer sooner or later; each says how its servers accept
            answer = requests.get(f"{server.url}/", timeout=10).json()
            seen[answer["pid"]] = answer["servers"]
        # Nothing else is queued while a worker answers: its share is one connection.
        assert seen and all(servers == [[True, 2, 1]] for servers in seen.values()), seen
    finally:
        server.stop()


def test_the_share_is_the_queue_split_between_the_workers():
    import socket

    listener = socket.create_server(("127.0.0.1", 0), backlog=512)
    clients = []
    try:
        assert capacity.accept_share(listener, 2) == 1  # nothing queued: one, as gunicorn would
        clients = [socket.create_connection(listener.getsockname()) for _ in range(5)]
        deadline = time.monotonic() + 5
        while capacity.accept_share(listener, 1) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)  # the kernel queues each connection as its handshake completes
        assert [capacity.accept_share(listener, n) for n in (1, 2, 4)] == [5, 3, 2]
        clients += [socket.create_connection(listener.getsockname()) for _ in range(200)]
        while capacity.accept_share(listener, 1) < capacity.ACCEPT_BATCH and time.monotonic() < deadline:
            time.sleep(0.01)
        assert capacity.accept_share(listener, 2) == capacity.ACCEPT_BATCH  # a burst: never more than the cap
    finally:
        for c in clients:
            c.close()
        listener.close()
    a, b = socket.socketpair()  # no TCP_INFO: gunicorn's own choice
    try:
        assert capacity.accept_share(a, 2) == 1 and capacity.accept_share(a, 1) == capacity.ACCEPT_BATCH
    finally:
        a.close()
        b.close()


def test_the_accept_batch_leaves_other_worker_kinds_alone():
    assert capacity.batch_accepts(object()) is False
