"""`make soak`: sustained mixed load on gateway workers sharing one database, then a check of what it left.

    python -m bench.soak [--workers 2] [--seconds 300] [--calls N] [--clients 48]
                         [--database-url URL --redis-url URL]

Starts a fast simulator and the gateway as `make run` does (gunicorn, gevent workers, SQLite by
default), opens accounts, and runs bench/soak_load.py: plain and streamed chat completions,
Anthropic messages, key creation and revocation, credit purchases and `ledger reap` from the
command line, for --seconds, or until the clients have made --calls calls. Then it stops the
gateway and checks the database it left: SQLite's integrity check, `flask ledger check`, and that
every success a client saw has its request-log row and ledger entry at the cost the client was
told; and that the load itself made its calls, succeeded at every kind and made its minimums.
Prints a JSON summary; exit 1 on any problem.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from bench import procs
from kyma.config import DEFAULT_WORKERS
from tests.pg import delete_redis_prefix

ROOT = Path(__file__).resolve().parent.parent
PLAIN_MODEL, STREAM_MODEL = "llama-3.3-70b", "gpt-oss-120b"
KEY_ENV, UPSTREAM_KEY = "SOAK_UPSTREAM_KEY", "sk-soak-upstream"
ACCOUNTS = 6
MIN_PURCHASES, MIN_REAPS = 3, 2  # made even when the load outlasts --seconds on a slow machine
CHAT_KINDS = ("chat", "chat_stream", "messages")
SUCCESS = (200, 201)  # the statuses of a call that did what it asked (201: a key made)
# Every kind of call the load makes; a soak in which one never succeeded did not test that writer.
KINDS = (*CHAT_KINDS, "key_create", "key_revoke", "revoked_key_refused")
# What a worker's log must never say: a database error, an unhandled exception, a failed checkpoint
# or integrity check, or anything else logged at ERROR or CRITICAL.
BAD_LOG = re.compile(r"Traceback|DatabaseError|malformed|database is locked|disk I/O error|upkeep of|"
                     r"checkpoint of .* failed|quick_check|\b(ERROR|CRITICAL)\b")


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (the defaults are the long soak run before each release)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="gateway workers (default: as `make run`)")
    p.add_argument("--seconds", type=int, default=300, help="how long the load runs")
    p.add_argument("--calls", type=int, default=0, help="end the load sooner, once the clients made this many calls")
    p.add_argument("--clients", type=int, default=48, help="concurrent clients")
    p.add_argument("--database-url", default="", help="a PostgreSQL URL instead of a fresh SQLite file")
    p.add_argument("--redis-url", default="", help="Redis for limits and circuits (with --database-url)")
    p.add_argument("--gateway-root", type=Path, default=ROOT, help="source tree the gateway runs from")
    p.add_argument("--workdir", type=Path, default=None, help="keep the database and logs here")
    return p.parse_args(argv)


def start(args, workdir: Path) -> tuple[procs.Server, procs.Server]:
    """The simulator (no latency, fast streams) and the gateway, both answering."""
    root = args.gateway_root
    sim = procs.simulator("sim", workdir, root, UPSTREAM_KEY, tokens_per_sec="2000")
    sim.wait_ready("/v1/models")
    routes, tiers = procs.write_gateway_files(workdir, sim.url, sim.url, KEY_ENV, PLAIN_MODEL, STREAM_MODEL)
    extra = {"KYMA_SIGNUP_MAX_PER_HOUR": "1000"}
    if args.database_url:
        extra.update(KYMA_DATABASE_URL=args.database_url, KYMA_REDIS_URL=args.redis_url,
                     KYMA_REDIS_PREFIX=f"kyma-soak-{os.getpid()}:", KYMA_DATABASE_POOL_SIZE="8")
    env = procs.gateway_env(workdir, routes, tiers, KEY_ENV, UPSTREAM_KEY, extra)
    procs.flask(root, env, "init-db")
    gateway = procs.gunicorn("gateway", "app:app", env, workdir, root, args.workers)
    try:
        gateway.wait_ready("/healthz")
    except BaseException:
        sim.stop()
        raise
    return sim, gateway


CREDIT_ACCOUNTS = """import sys
from app import app
cli = app.test_cli_runner()
for email in sys.argv[1:]:
    done = cli.invoke(args=["credits", "add", email, "1000"])
    if done.exit_code != 0:
        sys.exit(f"credits add {email}: {done.output} {done.exception!r}")
"""


def open_accounts(gateway: procs.Server, root: Path) -> list[dict]:
    """Accounts with a key, a session and $1000 (the tier whose limits cannot throttle the soak)."""
    accounts = []
    for i in range(ACCOUNTS):
        email = f"soak-{i}@example.com"
        r = requests.post(f"{gateway.url}/v1/auth/register", json={"email": email, "password": "soak-password"},
                          timeout=30)
        r.raise_for_status()
        body = r.json()
        accounts.append({"email": email, "key": body["api_key"], "session": body["session_token"]})
    # `flask credits add` for every account in one process: a process spends most of its time starting up.
    done = subprocess.run([sys.executable, "-c", CREDIT_ACCOUNTS, *(a["email"] for a in accounts)], cwd=root,
                          env=gateway.env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"credits add failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return accounts


def load(args, gateway: procs.Server, accounts: list[dict]) -> dict:
    """Run bench/soak_load.py against the gateway; what its clients saw."""
    plan = {"url": gateway.url, "accounts": accounts, "seconds": args.seconds, "calls": args.calls,
            "clients": args.clients, "plain_model": PLAIN_MODEL, "stream_model": STREAM_MODEL,
            "purchase_every": 1.0, "reap_every": 3.0,
            "min_purchases": MIN_PURCHASES, "min_reaps": MIN_REAPS,
            "flask": str(procs.BIN / "flask"), "root": str(args.gateway_root), "env": gateway.env}
    done = subprocess.run([sys.executable, "-m", "bench.soak_load"], cwd=ROOT, input=json.dumps(plan),
                          capture_output=True, text=True, timeout=args.seconds + 300)
    if done.returncode != 0:
        raise RuntimeError(f"soak load failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def rows(url: str, sql: str) -> list[tuple]:
    """Rows of a read-only query on the database the gateway used (the gateway is stopped by now)."""
    if url.startswith("sqlite"):
        con = sqlite3.connect(f"file:{url.split(':///', 1)[1]}?mode=ro", uri=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        return con.execute(sql).fetchall()


def check(seen: dict, gateway: procs.Server, root: Path) -> list[str]:
    """Every way the database can disagree with itself or with what the clients saw."""
    url = gateway.env["KYMA_DATABASE_URL"]
    problems = []
    if url.startswith("sqlite"):
        try:
            result = [r[0] for r in rows(url, "PRAGMA integrity_check")]
            result += [f"foreign key: {r}" for r in rows(url, "PRAGMA foreign_key_check")]
        except sqlite3.DatabaseError as exc:
            result = [f"cannot read the database: {exc}"]
        if result != ["ok"]:
            problems.append("integrity_check: " + "; ".join(result)[:2000])
    ledger = subprocess.run([str(procs.BIN / "flask"), "--app", "app", "ledger", "check"], cwd=root,
                            env=gateway.env, capture_output=True, text=True, timeout=300)
    if ledger.returncode != 0:
        problems.append(f"ledger check: {(ledger.stderr or ledger.stdout).strip()[-2000:]}")
    if problems and any("integrity_check" in p for p in problems):
        return problems  # a corrupt file cannot be trusted for the row checks below
    problems += _check_rows(seen, url)
    log = gateway.log.read_text(errors="replace")
    bad = [line for line in log.splitlines() if BAD_LOG.search(line)]
    if bad:
        problems.append(f"gateway log: {len(bad)} bad lines, first: {bad[0][:300]}")
    return problems


def check_load(args, seen: dict) -> list[str]:
    """Whether the load did what a soak needs: its calls, every writer, its minimums, no client left."""
    problems = []
    if seen["unfinished"]:
        problems.append(f"{seen['unfinished']} clients had not finished when the load was stopped")
    if args.calls and len(seen["outcomes"]) < args.calls:
        problems.append(f"--seconds ended the load at {len(seen['outcomes'])} of --calls {args.calls}")
    succeeded = {o["kind"] for o in seen["outcomes"] if o["status"] in SUCCESS}
    if missing := [kind for kind in KINDS if kind not in succeeded]:
        problems.append(f"no successful call of {missing}")
    if len(seen["purchases"]) < MIN_PURCHASES or seen["reaps"] < MIN_REAPS:
        problems.append(f"{len(seen['purchases'])} purchases and {seen['reaps']} reaps, "
                        f"below the minimums {MIN_PURCHASES} and {MIN_REAPS}")
    return problems


def _check_rows(seen: dict, url: str) -> list[str]:
    problems = []
    failed = [o for o in seen["outcomes"] if o["status"] not in SUCCESS]
    if failed:
        problems.append(f"{len(failed)} calls failed as the client saw them, e.g. {failed[:3]}")
    logged = {rid: (status, cost) for rid, status, cost in rows(url, "SELECT request_id, status, cost_micros "
                                                                     "FROM requestlog")}
    usage = {rid: -amount for rid, amount in rows(url, "SELECT request_id, amount_micros FROM ledgerentry "
                                                       "WHERE kind = 'usage'")}
    missing_log, missing_usage, wrong_cost = [], [], []
    for o in seen["outcomes"]:
        if o["kind"] not in CHAT_KINDS or o["status"] != 200:
            continue
        micros = round(o["cost"] * 1_000_000)
        if logged.get(o["request_id"], (None,))[0] != 200:
            missing_log.append(o["request_id"])
        elif logged[o["request_id"]][1] != micros:
            wrong_cost.append((o["request_id"], micros, logged[o["request_id"]][1]))
        if usage.get(o["request_id"]) != micros:
            missing_usage.append((o["request_id"], micros, usage.get(o["request_id"])))
    for what, items in (("successes without a request-log row", missing_log),
                        ("successes logged at another cost", wrong_cost),
                        ("successes without their usage entry", missing_usage)):
        if items:
            problems.append(f"{len(items)} {what}, e.g. {items[:3]}")
    revoked = {kid: at for kid, at in rows(url, "SELECT id, revoked_at FROM apikey")}
    lost_keys = [k for k in seen["keys_created"] if k["id"] not in revoked or (k["revoked"] and not revoked[k["id"]])]
    if lost_keys:
        problems.append(f"{len(lost_keys)} created or revoked keys not in the database, e.g. {lost_keys[:3]}")
    credited = {}
    for key, n in rows(url, "SELECT idempotency_key, count(*) FROM ledgerentry WHERE kind = 'purchase' "
                            "AND idempotency_key LIKE 'credit:soak-%' GROUP BY idempotency_key"):
        credited[key.removeprefix("credit:")] = n
    bought = {p["key"] for p in seen["purchases"] if p["ok"]}
    if set(credited) != bought or any(n != 1 for n in credited.values()):
        problems.append(f"purchases: {len(bought)} made, {len(credited)} credited, "
                        f"{sum(n > 1 for n in credited.values())} credited twice")
    earlier: set[str] = set()
    for p in seen["purchases"]:
        if p["ok"] and p["key"] in earlier and not p["replayed"]:
            problems.append(f"purchase {p['key']} repeated but not replayed")
        earlier.add(p["key"])
    if any(not p["ok"] for p in seen["purchases"]):
        problems.append(f"failed purchases: {[p['stderr'] for p in seen['purchases'] if not p['ok']][:2]}")
    open_holds = rows(url, "SELECT count(*) FROM hold WHERE closed_at IS NULL")[0][0]
    if open_holds:
        problems.append(f"{open_holds} holds still open after every request ended")
    return problems


def summary(args, seen: dict, problems: list[str]) -> dict:
    """Counts by kind, the request rate and the problems found."""
    kinds: dict[str, dict[str, int]] = {}
    for o in seen["outcomes"]:
        k = kinds.setdefault(o["kind"], {})
        k[str(o["status"])] = k.get(str(o["status"]), 0) + 1
    chats = sum(1 for o in seen["outcomes"] if o["kind"] in CHAT_KINDS)
    return {"workers": args.workers, "backend": "postgresql" if args.database_url else "sqlite",
            "seconds": args.seconds, "clients": args.clients, "calls": len(seen["outcomes"]),
            "clients_seconds": seen["clients_seconds"],
            "chat_per_second": round(chats / max(seen["clients_seconds"], 0.1), 1), "by_kind": kinds,
            "purchases": len(seen["purchases"]), "reaps": seen["reaps"], "unfinished_clients": seen["unfinished"],
            "problems": problems, "ok": not problems}


def main(argv=None) -> int:
    """Start, load, stop, check; print the summary; exit 1 on any problem."""
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kyma-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sim, gateway = start(args, workdir)
    try:
        accounts = open_accounts(gateway, args.gateway_root)
        seen = load(args, gateway, accounts)
    finally:
        gateway.stop()
        sim.stop()
    problems = check_load(args, seen) + check(seen, gateway, args.gateway_root)
    if args.redis_url:  # the soak's rate-limit and circuit keys: its prefix is its own
        delete_redis_prefix(gateway.env["KYMA_REDIS_PREFIX"], args.redis_url)
    result = summary(args, seen, problems)
    print(json.dumps(result, indent=1))
    if args.workdir is None and not problems:
        shutil.rmtree(workdir, ignore_errors=True)
    elif problems:
        print(f"soak: database and logs kept in {workdir}", file=sys.stderr)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
