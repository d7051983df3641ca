"""Start real gateway and simulator processes on 127.0.0.1 for integration tests; stop them by PID."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, TypeVar

import requests

from kyma.launcher import PortTaken, Started, free_ports, spawn_logged, stop

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# The three built-in simulated providers and their personalities (see kyma/sim).
SIMULATED_PROVIDERS = ("sim-alpha", "sim-beta", "sim-gamma")
T = TypeVar("T")


def on_free_ports(n: int, start: Callable[[int], T], attempts: int = 3) -> T:
    """start(first port) on n consecutive free ports; on others if one was taken in the meantime."""
    for attempt in range(attempts):
        try:
            return start(free_ports(n))
        except PortTaken:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


Proc = Started  # a started test server


def spawn(target: str, port: int, env: dict, log: Path, workers: int = 1) -> Proc:
    """`target` under gunicorn with gevent workers on 127.0.0.1:port, output to `log` (not yet waited for)."""
    return Proc(spawn_logged(target, port, env, log, workers), port, log, env)


def start_simulator(name: str, workdir: Path, port: int | None = None, **settings: str) -> Proc:
    """A simulated OpenAI-compatible provider (kyma.sim) under gunicorn + gevent, on a free port by default."""
    env = {**os.environ, "KYMA_SIM_NAME": name, **{k.upper(): str(v) for k, v in settings.items()}}

    def start(port: int) -> Proc:
        log = workdir / f"{name}-{port}.log"
        proc = spawn("kyma.sim.app:create_sim_app()", port, env, log)
        proc.wait_started("/v1/models")
        return proc

    return start(port) if port else on_free_ports(1, start)


def start_simulators(workdir: Path, **settings: str) -> tuple[int, list[Proc]]:
    """The three simulated providers on consecutive free ports: (first port, processes)."""
    def start(base: int) -> tuple[int, list[Proc]]:
        procs: list[Proc] = []
        try:
            for i, name in enumerate(SIMULATED_PROVIDERS):
                procs.append(start_simulator(name, workdir, base + i, **settings))
        except BaseException:
            stop([p.popen for p in procs])
            raise
        return base, procs

    return on_free_ports(len(SIMULATED_PROVIDERS), start)


def gateway_env(workdir: Path, sim_base_port: int, **extra: str) -> dict:
    """Environment for a gateway process with its own SQLite database under workdir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KYMA_", "OPENAI_", "ANTHROPIC_"))}
    env.update({
        "KYMA_INSTANCE_DIR": str(workdir),
        "KYMA_DATABASE_URL": f"sqlite:///{workdir / 'kyma.db'}",
        "KYMA_SECRET_KEY": "test-secret",
        "KYMA_SIM_BASE_PORT": str(sim_base_port),
        "KYMA_BCRYPT_ROUNDS": "4",
        "KYMA_LOG_LEVEL": "WARNING",
        "KYMA_SIGNUP_MAX_PER_HOUR": "100000",  # tests register many accounts from 127.0.0.1
        "KYMA_SIGNUP_MAX_GLOBAL_PER_HOUR": "100000",
    })
    # --- scale-out pass: KYMA_TEST_BACKEND=postgres gives each gateway a fresh PostgreSQL
    # database and Redis prefix instead of SQLite (see tests/pg.py; `make test` runs both passes).
    from tests.pg import backend_env

    if "KYMA_DATABASE_URL" not in extra:
        env.update(backend_env())
    # --- end scale-out pass
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_gateway(workdir: Path, env: dict, workers: int = 2, port: int | None = None) -> Proc:
    """Migrate the schema, then start the gateway under gunicorn with gevent workers."""
    subprocess.run([str(BIN / "flask"), "--app", "app", "init-db"], cwd=ROOT, env=env, check=True,
                   capture_output=True)

    def start(port: int) -> Proc:
        log = workdir / f"gateway-{port}.log"
        proc = spawn("app:app", port, env, log, workers)
        proc.wait_started("/healthz")
        return proc

    return start(port) if port else on_free_ports(1, start)


def flask_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    """Run `flask --app app ARGS` against the database a gateway environment names."""
    return subprocess.run([str(BIN / "flask"), "--app", "app", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def register(url: str, email: str, password: str = "correct horse") -> dict:
    """Register an account over HTTP and return the JSON answer (api_key, session_token, …)."""
    r = requests.post(f"{url}/v1/auth/register", json={"email": email, "password": password}, timeout=10)
    r.raise_for_status()
    return r.json()


def db_rows(env: dict, sql: str, *params) -> list[tuple]:
    """Rows of a query on the database a gateway environment names (SQLite or PostgreSQL).

    Write placeholders as {p}; they become ? or %s for the backend.
    """
    from kyma.db import is_sqlite_db, make_database

    db = make_database(env["KYMA_DATABASE_URL"])
    try:
        cursor = db.execute_sql(sql.format(p=db.param), params)
        if is_sqlite_db(db):
            return cursor.fetchall()  # APSW: [] for a statement without rows
        return list(cursor.fetchall()) if cursor.description else []  # a DELETE has no rows (psycopg raises)
    finally:
        db.close()


def reset_breakers(env: dict) -> None:
    """Close every circuit of a gateway (database or Redis store): fault tests on a shared gateway
    must not leave routes open for the tests after them."""
    if env.get("KYMA_REDIS_URL"):
        import redis

        r = redis.Redis.from_url(env["KYMA_REDIS_URL"])
        keys = list(r.scan_iter(f"{env.get('KYMA_REDIS_PREFIX', 'kyma:')}breaker:*"))
        if keys:
            r.delete(*keys)
    db_rows(env, "delete from routestate")
