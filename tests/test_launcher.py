"""`python -m kyma.launcher` starts the simulators and a gateway, and leaves no process behind."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from kyma import procs
from tests import zygote
from tests.servers import ROOT

# Real launcher and gunicorn processes. The stand-in gateway below opens no database and the
# launcher gets no KYMA_ setting from the test run, so the PostgreSQL pass would run it unchanged.
pytestmark = [pytest.mark.integration, pytest.mark.no_database]

# A stand-in gateway (the simulator app) keeps this test independent of the gateway's own parts.
STAND_IN = "kyma.sim.app:create_sim_app()"


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def free_block(n: int) -> int:
    """The first of n consecutive ports free now, below the kernel's ephemeral range.

    The launcher binds them itself (its ports are settings), after this has let them go: below that
    range no outgoing connection and no listener on port 0 can take one meanwhile (another launcher
    test choosing the same block at random still could, rarely).
    """
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        base = random.randrange(max(1024, min(10_000, ephemeral_low // 2)), ephemeral_low - n)  # not privileged
        held = []
        try:
            held += [procs.listen(port=port) for port in range(base, base + n)]
            return base
        except procs.PortInUse:
            continue
        finally:
            for s in held:
                s.close()
    raise procs.PortInUse(0, f"no {n} consecutive free ports below {ephemeral_low}")


def launch(tmp_path, **extra):
    base = free_block(4)  # three simulators and the gateway: one block, so no two of them collide
    port = base + 3
    env = procs.caller_env()
    env.update({"KYMA_SIM_BASE_PORT": str(base), "KYMA_PORT": str(port), "KYMA_WORKERS": "1",
                "KYMA_INSTANCE_DIR": str(tmp_path), "KYMA_SECRET_KEY": "test", **extra})
    proc = subprocess.Popen([sys.executable, "-m", "kyma.launcher", "--gateway-app", STAND_IN], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=(tmp_path / "launcher.err").open("wb"),
                            text=True)
    return proc, base, port


def read_banner(proc) -> list[str]:
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C" in line:
            return lines
    raise AssertionError(f"launcher exited before its banner: {lines}")


def stop_and_check(proc, started: list[int]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    deadline = time.monotonic() + 5
    while any(alive(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in started if alive(p)]


def test_launcher_starts_three_simulators_and_stops_them(tmp_path):
    proc, base, port = launch(tmp_path)
    try:
        banner = "".join(read_banner(proc))
        assert f"http://127.0.0.1:{port}" in banner and "/v1/auth/register" in banner
        names = [requests.get(f"http://127.0.0.1:{base + i}/sim/stats", timeout=5).json()["name"] for i in range(3)]
        assert names == ["sim-alpha", "sim-beta", "sim-gamma"]
        models = requests.get(f"http://127.0.0.1:{base}/v1/models", timeout=5).json()["data"]
        assert "qwen-3.6-plus" in {m["id"] for m in models}  # the catalog's ids
        assert requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).status_code == 200
        started = children_of(proc.pid)
        assert len(started) == 2  # one simulator master for the three, and the gateway master
    finally:
        if proc.poll() is None:
            stop_and_check(proc, started)
    for p in (base, base + 1, base + 2, port):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{p}/v1/models", timeout=2)


def test_simulators_off_starts_only_the_gateway(tmp_path):
    proc, base, port = launch(tmp_path, KYMA_SIMULATORS="off")
    try:
        assert "Simulated providers: off" in "".join(read_banner(proc))
        assert len(children_of(proc.pid)) == 1
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{base}/v1/models", timeout=2)
    finally:
        stop_and_check(proc, children_of(proc.pid))


def test_killed_launcher_leaves_no_orphans(tmp_path):
    proc, base, port = launch(tmp_path)
    read_banner(proc)
    started = children_of(proc.pid)
    assert len(started) == 2
    proc.kill()  # SIGKILL: no handler runs; the children's parent-death signal must stop them
    proc.wait(5)
    deadline = time.monotonic() + 15
    while any(alive(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in started if alive(p)]


def test_a_port_in_use_is_reported_by_its_number_before_anything_starts(tmp_path):
    holder = procs.listen()
    taken = holder.getsockname()[1]
    try:
        proc, base, _ = launch(tmp_path, KYMA_PORT=str(taken))
        assert proc.wait(30) == 1
        assert proc.stdout.read() == ""  # no banner
    finally:
        holder.close()
    err = (tmp_path / "launcher.err").read_text()
    assert f"127.0.0.1:{taken}" in err and "in use" in err
    with pytest.raises(requests.ConnectionError):  # no simulator was started
        requests.get(f"http://127.0.0.1:{base}/v1/models", timeout=2)


def test_consecutive_sockets_listen_on_consecutive_ports():
    socks = procs.listen_consecutive(3)
    try:
        ports = [s.getsockname()[1] for s in socks]
        assert ports == [ports[0], ports[0] + 1, ports[0] + 2]
        with pytest.raises(procs.PortInUse):
            procs.listen("127.0.0.1", ports[1])
    finally:
        for s in socks:
            s.close()


# Started as `make run` starts them, and forked from the tests' zygote (tests/zygote.py).
SPAWNERS = pytest.mark.parametrize("spawn", [subprocess.Popen, zygote.spawn], ids=["exec", "zygote"])


@SPAWNERS
def test_a_server_answers_on_the_socket_bound_before_it_started(tmp_path, spawn, monkeypatch):
    monkeypatch.delenv("KYMA_TEST_ZYGOTE", raising=False)
    sock = procs.listen()
    port = sock.getsockname()[1]
    sim = procs.start(procs.SIM_TARGET, sock, {**os.environ, "KYMA_SIM_NAME": "sim-fd"}, log=tmp_path / "sim.log",
                      spawn=spawn)
    try:
        assert isinstance(sim.popen, subprocess.Popen if spawn is subprocess.Popen else zygote.ForkedServer)
        assert sim.port == port
        sim.wait_ready("/v1/models")
        assert requests.get(f"{sim.url}/sim/stats", timeout=5).json()["name"] == "sim-fd"
    finally:
        # gunicorn's quick shutdown: a graceful one waits out its gevent worker's one-second naps, and the
        # stop is not what this test is about (the launcher's tests stop gracefully).
        sim.stop(signal.SIGINT)
    assert sim.popen.returncode == 0  # gunicorn's quick shutdown, as Popen reports it either way
    assert "Using worker: kyma.worker.ShareAcceptWorker" in (tmp_path / "sim.log").read_text()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{sim.url}/v1/models", timeout=2)


@SPAWNERS
def test_a_server_that_exits_is_reported_with_the_end_of_its_log(tmp_path, spawn, monkeypatch):
    monkeypatch.delenv("KYMA_TEST_ZYGOTE", raising=False)
    sim = procs.start("no_such_module:app", procs.listen(), dict(os.environ), log=tmp_path / "bad.log", spawn=spawn)
    with pytest.raises(RuntimeError) as exc:
        sim.wait_ready("/", timeout=60)
    assert "exited" in str(exc.value) and "no_such_module" in str(exc.value)
    assert sim.popen.wait(5) not in (0, None)  # gunicorn's exit status, as Popen would report it
