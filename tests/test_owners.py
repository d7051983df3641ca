"""A hold's owner: this worker's identity, and when the reaper may call an owner gone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from kyma.services import owners


def test_a_worker_that_exited_but_is_not_yet_reaped_is_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Wait for the exit without reaping it: the child stays a zombie, as a killed gunicorn worker
        # does until its master gets to it.
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        os.kill(child.pid, 0)  # a zombie still answers the signal check: only its state tells
        owner = owners.identity_of(child.pid)
        assert owners.is_zombie(child.pid)
        assert owners.owner_is_dead(owner, socket.gethostname(), owners.worker_identity())
    finally:
        child.wait()
    assert owners.owner_is_dead(owner, socket.gethostname(), owners.worker_identity()), "reaped: gone too"


def test_a_running_worker_elsewhere_or_this_one_is_not_gone():
    host, me = socket.gethostname(), owners.worker_identity()
    with subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE) as alive:
        try:
            assert not owners.is_zombie(alive.pid)
            assert not owners.owner_is_dead(owners.identity_of(alive.pid), host, me)
        finally:
            alive.stdin.close()
    assert not owners.owner_is_dead(me, host, me)
    assert not owners.owner_is_dead("other-host:1", host, me), "another host's pids are not ours to test"
    assert not owners.owner_is_dead(f"{host}:not-a-pid", host, me)


def test_a_long_host_name_is_cut_so_that_the_pid_stays_whole_and_hosts_stay_apart(monkeypatch):
    host, twin = "pod-" + "x" * 55 + "-a1b2c", "pod-" + "x" * 55 + "-d3e4f"  # pod names differ at the end
    monkeypatch.setattr(owners.socket, "gethostname", lambda: host)
    owners.identity_of.cache_clear()
    try:
        me = owners.worker_identity()
        assert len(me) == owners.OWNER_LENGTH and me.endswith(f":{os.getpid()}")
        assert not owners.owner_is_dead(me, host, me)
        with subprocess.Popen([sys.executable, "-c", "pass"]) as gone:
            pass
        ours = owners.identity_of(gone.pid)
        assert owners.owner_is_dead(ours, host, me), "a cut host still names this host"
        monkeypatch.setattr(owners.socket, "gethostname", lambda: twin)
        owners.identity_of.cache_clear()
        theirs = owners.identity_of(gone.pid)
        assert theirs != ours and not owners.owner_is_dead(theirs, host, me), "another host's, cut alike"
        assert not owners.owner_is_dead(f"{host[:10]}:{gone.pid}", host, me), "cut elsewhere: not this host's"
    finally:
        owners.identity_of.cache_clear()


@pytest.mark.parametrize("name", ["python", "a b", "x) Z (y"])
def test_the_state_is_read_after_the_command_name_whatever_it_holds(name):
    assert owners.process_state(f"123 ({name}) S 1 123 123 0 -1 4194304") == "S"
    assert owners.process_state(f"123 ({name}) Z 1 123 123 0 -1 4194304") == "Z"
    assert owners.process_state(f"123 ({name})") == "", "a line cut short has no state"
