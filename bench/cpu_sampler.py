"""A CPU-time sampling profiler for the gateway's workers, greenlets included.

py-spy samples wall-clock time of the threads it finds running, and on a busy machine a worker
that was preempted (most often right after a send woke the reader) is "running" where it stopped:
its samples pile up in socket sends. This sampler uses ITIMER_PROF instead, which ticks only with
the process's own CPU time (user and system), and records the Python stack that runs when the
tick is delivered, whichever greenlet that is. Time spent inside C code (a syscall, SQLite, the
event loop) is charged to the Python frame that runs next, normally the caller.

bench/streams.py --cpu-profile DIR starts the gateway with this module's directory-free shim on
PYTHONPATH: every forked worker samples itself and writes collapsed stacks (py-spy's raw format,
so bench/profile.py's summary reads them) to DIR/cpu-<pid>.txt every few seconds and at exit.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

INTERVAL = 0.002  # seconds of CPU time between samples
WRITE_EVERY = 3.0  # seconds of wall time between rewrites of the output file
ENV = "KYMA_BENCH_CPU_PROFILE"  # the output directory; unset: no sampling

SHIM = f"""import os
if os.environ.get({ENV!r}):
    import bench.cpu_sampler
    bench.cpu_sampler.arm()
"""


def _frame_name(code) -> str:
    path = code.co_filename
    for marker in ("site-packages/", "/kyma/", "/bench/"):
        i = path.rfind(marker)
        if i >= 0:
            path = path[i + len(marker):] if marker == "site-packages/" else path[i + 1:]
            break
    return f"{code.co_name} ({path})"


class Sampler:
    """Counts the stacks seen at each CPU tick; writes them as `frame;frame;... count` lines."""

    def __init__(self, out: Path):
        self.out = out
        self.stacks: Counter[str] = Counter()
        self.written = time.monotonic()

    def tick(self, _signum, frame) -> None:
        names = []
        while frame is not None:
            names.append(_frame_name(frame.f_code))
            frame = frame.f_back
        self.stacks[";".join(reversed(names))] += 1
        if time.monotonic() - self.written > WRITE_EVERY:
            self.write()

    def write(self) -> None:
        self.written = time.monotonic()
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text("".join(f"{stack} {n}\n" for stack, n in self.stacks.items()))
        tmp.replace(self.out)


def _start() -> None:
    out = Path(os.environ[ENV]) / f"cpu-{os.getpid()}.txt"
    sampler = Sampler(out)
    signal.signal(signal.SIGPROF, sampler.tick)
    signal.setitimer(signal.ITIMER_PROF, INTERVAL, INTERVAL)
    atexit.register(sampler.write)


def arm() -> None:
    """Sample every process forked from this one (gunicorn's workers), not this one."""
    os.register_at_fork(after_in_child=_start)


def shim_dir(base: Path) -> Path:
    """A directory holding a sitecustomize.py that arms the sampler when ENV is set; for PYTHONPATH."""
    d = base / "cpu-sampler-shim"
    d.mkdir(parents=True, exist_ok=True)
    (d / "sitecustomize.py").write_text(SHIM)
    return d


if __name__ == "__main__":
    sys.exit("used by bench/streams.py --cpu-profile")
