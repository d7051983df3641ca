"""The test servers' zygote: gunicorn masters forked from one process behave as started ones do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from kyma import procs
from tests import zygote

pytestmark = [pytest.mark.integration, pytest.mark.no_database]  # stand-in servers: no backend plays a part


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.fixture(autouse=True)
def zygote_on(monkeypatch):
    monkeypatch.delenv("KYMA_TEST_ZYGOTE", raising=False)  # these tests are of the zygote itself


def test_a_forked_server_is_the_zygotes_child_with_its_own_environment(tmp_path):
    sim = procs.start(procs.SIM_TARGET, procs.listen(), {**os.environ, "KYMA_SIM_NAME": "sim-forked"},
                      log=tmp_path / "sim.log", spawn=zygote.spawn)
    try:
        assert parent_of(sim.popen.pid) == zygote.ZYGOTE._process.pid
        sim.wait_ready("/v1/models")
        assert requests.get(f"{sim.url}/sim/stats", timeout=5).json()["name"] == "sim-forked"  # not the zygote's
        assert sim.popen.poll() is None
    finally:
        sim.stop(signal.SIGINT)
    assert sim.popen.poll() == 0


@pytest.mark.parametrize("change", [{"env": {"PYTHONHASHSEED": "12345"}}, {"cwd": "/"}, {"command": ["-c", "pass"]}])
def test_what_the_zygote_cannot_reproduce_starts_by_exec(change):
    command = [sys.executable, *change.get("command", ["-m", "gunicorn", "--version"])]
    started = zygote.spawn(command, cwd=change.get("cwd", zygote.ROOT), env={**os.environ, **change.get("env", {})},
                           start_new_session=True)
    assert isinstance(started, subprocess.Popen)
    assert started.wait(60) == 0


def test_servers_end_with_their_zygote_and_the_next_spawn_starts_another(tmp_path):
    own = zygote.Zygote()
    env = {**os.environ, "KYMA_SIM_NAME": "sim-orphan"}
    sim = procs.start(procs.SIM_TARGET, procs.listen(), env, log=tmp_path / "a.log", spawn=own.spawn)
    try:
        sim.wait_ready("/v1/models")
        first = own._process
        first.kill()
        first.wait(10)
        # No status can come from a dead zygote (wait() says -SIGTERM); the loop below sees the master end.
        assert sim.popen.wait(10) == -signal.SIGTERM
        gone, deadline = False, time.monotonic() + 60  # the master's graceful stop: a bound, not a timing claim
        while not gone and time.monotonic() < deadline:
            try:
                requests.get(f"{sim.url}/v1/models", timeout=5)
            except requests.Timeout:
                pass  # a worker still on its way out: ask again
            except requests.ConnectionError:
                gone = True
            else:
                time.sleep(0.1)
        assert gone
        again = procs.start(procs.SIM_TARGET, procs.listen(), env, log=tmp_path / "b.log", spawn=own.spawn)
        try:
            again.wait_ready("/v1/models")
            assert own._process.pid != first.pid and parent_of(again.popen.pid) == own._process.pid
        finally:
            again.stop(signal.SIGINT)
    finally:
        sim.stop(signal.SIGINT)
        own._stop()


END_A_STUCK_MASTER = """
import os, signal, subprocess, sys
from tests import zygote

ignores = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print(1, flush=True); time.sleep(60)"
master = subprocess.Popen([sys.executable, "-c", ignores], start_new_session=True, stdout=subprocess.PIPE)
master.stdout.readline()  # it ignores SIGINT from here on
read, write = os.pipe()
status_fds = {master.pid: write}
zygote._end(status_fds, zygote._Unpatched(), grace=0.2)
print(status_fds == {}, zygote._STATUS.unpack(os.read(read, zygote._STATUS.size))[0])
"""


def test_a_master_that_ignores_its_stop_is_killed_at_the_end_and_its_status_told():
    # In a process of its own: the zygote's reaping waits for any child, which would steal this one's.
    done = subprocess.run([sys.executable, "-c", END_A_STUCK_MASTER], cwd=zygote.ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", str(-signal.SIGKILL)]
