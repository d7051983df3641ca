"""Start real gateway and simulator processes on 127.0.0.1 for integration tests; stop them by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from kyma import procs
from tests import zygote

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# The three built-in simulated providers and their personalities (see kyma/sim).
SIMULATED_PROVIDERS = ("sim-alpha", "sim-beta", "sim-gamma")
# A stopping worker waits this long for open (keep-alive) connections, not gunicorn's 30 s.
QUICK_STOP = ("--graceful-timeout", "3")
# A prompt the simulators answer with 400 tokens: at the slow gateway's 20 tokens a second it is
# still streaming long after a test presses Stop, however loaded the machine (a short reply can
# end first, and the test then sees "Done." where it waits for "Stopped.").
LONG_REPLY_PROMPT = "Count to 400 about rivers"


class Server(procs.Server):
    """A throw-away server: stopped with SIGINT, gunicorn's quick shutdown (nothing to drain)."""

    def stop(self, sig: int = signal.SIGINT, grace: float = 10) -> None:
        super().stop(sig, grace)


def spawn_simulator(name: str, workdir: Path, **settings: str) -> Server:
    """A simulated OpenAI-compatible provider (kyma.sim) under gunicorn + gevent; not yet waited for."""
    env = {**os.environ, "KYMA_SIM_NAME": name, **{k.upper(): str(v) for k, v in settings.items()}}
    sock = procs.listen()
    return procs.start(procs.SIM_TARGET, sock, env, log=workdir / f"{name}-{sock.getsockname()[1]}.log", name=name,
                       kind=Server, extra=QUICK_STOP, spawn=zygote.spawn)


def start_simulator(name: str, workdir: Path, **settings: str) -> Server:
    """spawn_simulator(), answering."""
    sim = spawn_simulator(name, workdir, **settings)
    sim.wait_ready("/v1/models")
    return sim


def spawn_simulators(workdir: Path, socks: list[socket.socket], **settings: str) -> list[Server]:
    """The three simulated providers in one process, one on each socket; not yet waited for."""
    env = {**os.environ, **{k.upper(): str(v) for k, v in settings.items()}}
    log = workdir / f"sims-{socks[0].getsockname()[1]}.log"
    return procs.start_simulators(SIMULATED_PROVIDERS, socks, env, log=log, kind=Server, extra=QUICK_STOP,
                                  spawn=zygote.spawn)


def start_simulators(workdir: Path, **settings: str) -> tuple[int, list[Server]]:
    """The three simulated providers on consecutive ports, answering: (first port, servers).

    One process serves the three (a Server each, by name and port; stopping one stops all): a test
    that needs a provider gone, or one unlike the others, starts it alone with start_simulator().
    """
    sims = spawn_simulators(workdir, procs.listen_consecutive(len(SIMULATED_PROVIDERS)), **settings)
    try:
        for sim in sims:
            sim.wait_ready("/v1/models")
    except BaseException:
        stop_all(sims)
        raise
    return sims[0].port, sims


def gateway_env(workdir: Path, sim_base_port: int, **extra: str) -> dict:
    """Environment for a gateway process with its own SQLite database under workdir."""
    env = procs.caller_env()
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


def stop_all(servers: list[Server]) -> None:
    """Stop servers together (each is signalled before any is waited for)."""
    procs.stop(servers, sig=signal.SIGINT)


def migrate(env: dict) -> None:
    """Create or migrate the schema of the database a gateway environment names."""
    done = flask_here(env, "init-db")
    if done.returncode != 0:
        raise RuntimeError(f"flask init-db failed: {done.stderr.strip()[-2000:]}")


# One gevent worker unless a test needs two (races across processes, state each worker keeps, the shared
# gateway that such tests use): every extra worker is one more boot of the whole app.
def spawn_gateway(workdir: Path, env: dict, workers: int = 1, sock: socket.socket | None = None) -> Server:
    """The gateway under gunicorn with gevent workers on its migrated database; not yet waited for."""
    sock = sock or procs.listen()
    return procs.start("app:app", sock, env, log=workdir / f"gateway-{sock.getsockname()[1]}.log",
                       workers=workers, name="gateway", kind=Server, extra=QUICK_STOP, spawn=zygote.spawn)


def start_gateway(workdir: Path, env: dict, workers: int = 1) -> Server:
    """Migrate the schema, then start the gateway and wait until it answers."""
    migrate(env)
    gw = spawn_gateway(workdir, env, workers)
    gw.wait_ready("/healthz")
    return gw


def start_stack(workdir: Path, sim_settings: dict | None = None, workers: int = 1,
                **gateway_settings) -> tuple[Server, list[Server]]:
    """The three simulators (one process) and a gateway in front of them, their boots overlapping: (gateway, sims)."""
    socks = procs.listen_consecutive(len(SIMULATED_PROVIDERS))
    env = gateway_env(workdir, socks[0].getsockname()[1], **gateway_settings)
    servers = spawn_simulators(workdir, socks, **(sim_settings or {}))
    try:
        migrate(env)
        servers.append(spawn_gateway(workdir, env, workers))
        for server in servers:
            server.wait_ready("/healthz" if server.name == "gateway" else "/v1/models")
    except BaseException:
        stop_all(servers)
        raise
    return servers[-1], servers[:-1]


def flask_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    """Run `flask --app app ARGS` against the database a gateway environment names."""
    return subprocess.run([str(BIN / "flask"), "--app", "app", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def flask_here(env: dict, *args: str) -> subprocess.CompletedProcess:
    """flask_cli() run in this process: the same command on the same database, answered the same way.

    A new interpreter that imports the gateway costs about a CPU-second, which setting up a test
    or checking the ledger after it need not pay; tests of the command line itself use flask_cli().
    """
    import traceback
    from dataclasses import asdict

    from kyma.config import Settings
    from kyma.db import database
    from kyma.factory import create_app

    # The command's output is what counts: no JSON log handler or metrics registry left in this process.
    settings = {**asdict(Settings.from_env(environ=env)), "log_format": "text", "metrics": False}
    bound = database.obj
    app = create_app(settings)
    try:
        result = app.test_cli_runner().invoke(args=list(args))
    finally:
        db = database.obj  # no connection outlives the command (a PostgreSQL pool closes them all)
        if hasattr(db, "close_all"):
            db.close_all()
        else:
            db.close()
        database.initialize(bound)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["flask", "--app", "app", *args], result.exit_code, result.stdout, stderr)


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


def announce_key_change(env: dict) -> None:
    """After changing a key or account row by hand: tell the gateway's workers, as its services do,
    that the key rows they keep are stale (nothing to do without Redis, where none are kept)."""
    if env.get("KYMA_REDIS_URL"):
        import redis

        client = redis.Redis.from_url(env["KYMA_REDIS_URL"])
        try:
            client.incr(f"{env.get('KYMA_REDIS_PREFIX', 'kyma:')}auth:generation")
        finally:
            client.close()


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


def end_cooldowns(env: dict) -> None:
    """Make every open circuit of a gateway due for its probe, as if its cooldown had passed."""
    if env.get("KYMA_REDIS_URL"):
        import redis

        r = redis.Redis.from_url(env["KYMA_REDIS_URL"])
        for key in r.scan_iter(f"{env.get('KYMA_REDIS_PREFIX', 'kyma:')}breaker:*"):
            r.hset(key, "opened_until", 1)
    db_rows(env, "update routestate set opened_until = {p} where state = 'open'", "2000-01-01 00:00:00")
