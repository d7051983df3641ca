"""Connections per worker: the setting, gunicorn's flags, and the open-file limit raised to fit."""

from __future__ import annotations

import os
import resource

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
