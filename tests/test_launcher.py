"""`python -m kyma.launcher` starts the simulators and a gateway, and leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from kyma.launcher import FREE_PORT_FLOOR, ephemeral_ports, free_ports
from tests.servers import ROOT

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


def launch(tmp_path, **extra):
    base = free_ports(4)  # three simulators and the gateway: one block, so no two of them collide
    port = base + 3
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYMA_")}
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
        assert len(started) == 4  # three simulator masters and the gateway master
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
    assert len(started) == 4
    proc.kill()  # SIGKILL: no handler runs; the children's parent-death signal must stop them
    proc.wait(5)
    deadline = time.monotonic() + 15
    while any(alive(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in started if alive(p)]


def test_free_ports_are_consecutive_and_outside_the_ephemeral_range():
    # An ephemeral port can be taken by any outgoing connection (or the readiness probe's own
    # self-connect) before the server binds it: CI once lost a whole pass to that.
    ephemeral = ephemeral_ports()
    for _ in range(50):
        base = free_ports(3)
        assert not {base, base + 1, base + 2} & set(ephemeral)
        assert base >= FREE_PORT_FLOOR and base + 2 <= 65535


def test_a_port_another_server_holds_is_reported_with_the_log_and_another_is_used(tmp_path):
    # The holder answers HTTP, as another run's gunicorn would: while ours retries its bind, the
    # readiness probe must not take that answer for ours.
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from tests.servers import PortTaken, on_free_ports, start_simulator

    class Answering(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    holder = HTTPServer(("127.0.0.1", free_ports()), Answering)
    threading.Thread(target=holder.serve_forever, daemon=True).start()
    taken, tried, refused = holder.server_address[1], [], []

    def start(p):
        tried.append(p)
        try:
            return start_simulator("sim-alpha", tmp_path, taken if len(tried) == 1 else p)
        except PortTaken as exc:
            refused.append(str(exc))
            raise

    try:
        proc = on_free_ports(1, start)
    finally:
        holder.shutdown()
        holder.server_close()
    try:
        assert len(tried) == 2 and proc.port == tried[1] != taken
        assert "Connection in use" in refused[0] and str(tmp_path) in refused[0]  # with the log's end
        assert requests.get(f"{proc.url}/sim/stats", timeout=5).json()["name"] == "sim-alpha"
    finally:
        proc.stop()


def test_free_ports_still_finds_ports_when_the_ephemeral_range_covers_them_all(monkeypatch):
    import kyma.launcher as launcher

    monkeypatch.setattr(launcher, "ephemeral_ports", lambda: range(1024, 65536))
    base = launcher.free_ports(2)
    assert 1024 <= base and base + 1 <= 65535
