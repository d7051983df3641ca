"""The soak's client side: mixed traffic from one gevent process, every outcome recorded.

    python -m bench.soak_load < plan.json > outcomes.json

Run as its own process (it monkey-patches); bench/soak.py starts it and checks the database
against what it prints. The plan names the gateway, the accounts, how long and how many clients;
the outcomes list every answer the clients saw, so that each success can be matched with its
ledger entries and request-log row afterwards.
"""

from gevent import monkey

monkey.patch_all()

import http.client  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402

TIMEOUT = 60  # seconds a client waits for an answer before counting it as failed


@dataclass
class Outcome:
    """One call a client made: what it was, what came back, and what the gateway said it cost."""

    kind: str
    status: int
    account: str = ""
    request_id: str = ""
    cost: float | None = None
    detail: str = ""


@dataclass
class Recorder:
    """Everything the clients saw, in the order they saw it."""

    outcomes: list[Outcome] = field(default_factory=list)
    keys_created: list[dict] = field(default_factory=list)
    purchases: list[dict] = field(default_factory=list)
    reaps: int = 0

    def add(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        return outcome


class Client:
    """One keep-alive HTTP connection to the gateway, reopened after any failure."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, token: str, body: dict | None = None) -> tuple[int, dict, bytes]:
        """(status, lower-cased headers, whole body); the connection is dropped after an error."""
        headers = {"Authorization": f"Bearer {token}"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            self.conn.request(method, path, body=data, headers=headers)
            resp = self.conn.getresponse()
            payload = resp.read()
        except Exception:
            self.conn.close()
            self.conn = None
            raise
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload


PLAIN = {"messages": [{"role": "user", "content": "Say hello in one short sentence."}], "max_tokens": 48}
STREAM = {"messages": [{"role": "user", "content": "count to 20"}], "max_tokens": 96, "stream": True,
          "stream_options": {"include_usage": True}}


def chat(client: Client, rec: Recorder, plan: dict, account: dict, stream: bool) -> None:
    """One OpenAI chat completion, plain or streamed: a success needs a cost (and [DONE] when streamed)."""
    body = {"model": plan["stream_model"] if stream else plan["plain_model"], **(STREAM if stream else PLAIN)}
    status, headers, payload = client.call("POST", "/v1/chat/completions", account["key"], body)
    kind = "chat_stream" if stream else "chat"
    out = Outcome(kind, status, account["email"], headers.get("x-request-id", ""))
    if status == 200:
        out.cost, out.detail = _stream_cost(payload) if stream else _plain_cost(payload)
        if out.detail:
            out.status = -1  # a 200 whose body is broken is a failure the client saw
    else:
        out.detail = payload[:200].decode(errors="replace")
    rec.add(out)


def messages(client: Client, rec: Recorder, plan: dict, account: dict) -> None:
    """One Anthropic Messages call (not streamed): the same pipeline, translated at the edge."""
    body = {"model": plan["plain_model"], "max_tokens": 48,
            "messages": [{"role": "user", "content": "Say hello."}]}
    status, headers, payload = client.call("POST", "/v1/messages", account["key"], body)
    out = Outcome("messages", status, account["email"], headers.get("x-request-id", ""))
    if status == 200:
        try:
            out.cost = json.loads(payload)["usage"]["cost"]
        except (ValueError, KeyError, TypeError):
            out.status, out.detail = -1, "no usage.cost"
    else:
        out.detail = payload[:200].decode(errors="replace")
    rec.add(out)


def _plain_cost(payload: bytes) -> tuple[float | None, str]:
    try:
        return json.loads(payload)["usage"]["cost"], ""
    except (ValueError, KeyError, TypeError):
        return None, "no usage.cost"


def _stream_cost(payload: bytes) -> tuple[float | None, str]:
    """The cost on the stream's usage chunk; a problem if the stream did not end cleanly."""
    cost, done = None, False
    for line in payload.split(b"\n"):
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            done = True
            continue
        try:
            chunk = json.loads(data)
        except ValueError:
            return None, "unparseable event"
        if "error" in chunk:
            return None, f"error event: {chunk['error']}"[:200]
        usage = chunk.get("usage") or {}
        if "cost" in usage:
            cost = usage["cost"]
    if not done or cost is None:
        return cost, "stream ended without usage or [DONE]"
    return cost, ""


def key_cycle(client: Client, rec: Recorder, plan: dict, account: dict) -> None:
    """Create a key, use it once, revoke it, and check that it is refused afterwards."""
    status, _, payload = client.call("POST", "/v1/auth/keys", account["session"], {"name": "soak"})
    rec.add(Outcome("key_create", status, account["email"]))
    if status != 201:
        return
    created = json.loads(payload)
    entry = {"id": created["id"], "account": account["email"], "revoked": False}
    rec.keys_created.append(entry)
    chat(client, rec, plan, {**account, "key": created["key"]}, stream=False)
    status, _, _ = client.call("DELETE", f"/v1/auth/keys/{created['id']}", account["session"])
    rec.add(Outcome("key_revoke", status, account["email"]))
    if status != 200:
        return
    entry["revoked"] = True
    status, _, _ = client.call("POST", "/v1/chat/completions", created["key"],
                               {"model": plan["plain_model"], **PLAIN})
    # The revoked key must be refused: anything but 401 is a failure.
    rec.add(Outcome("revoked_key_refused", 200 if status == 401 else -1, account["email"],
                    detail="" if status == 401 else f"revoked key got {status}"))


# (action, weight): most traffic is chat, as in production; the rest exercises every other writer.
ACTIONS = (("chat", 50), ("chat_stream", 30), ("messages", 12), ("key_cycle", 3))


@dataclass
class Budget:
    """When the load ends: at the deadline, or once the clients have made `calls` calls (0: no such bound)."""

    deadline: float
    calls: int = 0

    def spent(self, rec: Recorder) -> bool:
        """Whether the clients stop here."""
        return time.monotonic() >= self.deadline or 0 < self.calls <= len(rec.outcomes)


def client_loop(url: str, rec: Recorder, plan: dict, budget: Budget, seed: int) -> None:
    """One client: random actions on random accounts until the budget is spent."""
    rnd = random.Random(seed)
    client = Client(url)
    names, weights = zip(*ACTIONS)
    while not budget.spent(rec):
        account = rnd.choice(plan["accounts"])
        action = rnd.choices(names, weights)[0]
        try:
            if action == "chat":
                chat(client, rec, plan, account, stream=False)
            elif action == "chat_stream":
                chat(client, rec, plan, account, stream=True)
            elif action == "messages":
                messages(client, rec, plan, account)
            else:
                key_cycle(client, rec, plan, account)
        except Exception as exc:  # noqa: BLE001 — a transport failure is an outcome, not a crash
            rec.add(Outcome(action, 0, account["email"], detail=f"{type(exc).__name__}: {exc}"[:200]))


def flask(plan: dict, *args: str) -> subprocess.CompletedProcess:
    """`flask --app app ARGS` against the gateway's database (a separate process, as an operator runs it)."""
    return subprocess.run([plan["flask"], "--app", "app", *args], cwd=plan["root"], env=plan["env"],
                          capture_output=True, text=True, timeout=120)


def purchases(rec: Recorder, plan: dict, budget: Budget) -> None:
    """Credit purchases from the command line, now and then repeating an idempotency key."""
    rnd = random.Random(7)
    n = 0
    # However slow the machine, the soak makes its minimum (joinall's timeout still bounds it).
    while not budget.spent(rec) or len(rec.purchases) < plan.get("min_purchases", 0):
        done_keys = [p for p in rec.purchases if p["ok"]]
        if done_keys and rnd.random() < 0.2:
            repeat = rnd.choice(done_keys)  # a retried purchase: must not credit twice
            key, email = repeat["key"], repeat["account"]
        else:
            n += 1
            key, email = f"soak-{n}", rnd.choice(plan["accounts"])["email"]
        done = flask(plan, "credits", "add", email, "1", "--idempotency-key", key)
        rec.purchases.append({"key": key, "account": email, "ok": done.returncode == 0,
                              "replayed": "already added" in done.stdout, "stderr": done.stderr[-300:]})
        gevent.sleep(plan["purchase_every"])


def reaps(rec: Recorder, plan: dict, budget: Budget) -> None:
    """`flask ledger reap` from another process now and then, beside the workers' own reapers."""
    attempts = 0
    while not budget.spent(rec) or attempts < plan.get("min_reaps", 0):
        gevent.sleep(plan["reap_every"])
        attempts += 1
        if flask(plan, "ledger", "reap").returncode == 0:
            rec.reaps += 1


def main() -> int:
    """Read the plan from stdin, run the clients until the budget is spent, print the outcomes as JSON."""
    plan = json.load(sys.stdin)
    rec = Recorder()
    budget = Budget(time.monotonic() + plan["seconds"], plan.get("calls", 0))
    jobs = [gevent.spawn(client_loop, plan["url"], rec, plan, budget, i) for i in range(plan["clients"])]
    writers = [gevent.spawn(purchases, rec, plan, budget), gevent.spawn(reaps, rec, plan, budget)]
    began = time.monotonic()
    give_up = began + plan["seconds"] + TIMEOUT + 60
    gevent.joinall(jobs, timeout=give_up - began)
    clients_seconds = time.monotonic() - began  # the writers may run on to make their minimums
    gevent.joinall(writers, timeout=max(0.0, give_up - time.monotonic()))
    jobs += writers
    json.dump({"outcomes": [asdict(o) for o in rec.outcomes], "keys_created": rec.keys_created,
               "purchases": rec.purchases, "reaps": rec.reaps, "unfinished": sum(not j.ready() for j in jobs),
               "clients_seconds": round(clients_seconds, 1)},
              sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
