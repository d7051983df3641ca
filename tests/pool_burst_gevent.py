"""Run by tests/test_pool_busy.py in a process of its own: a burst that fills a one-connection PostgreSQL pool
under gevent, as a gunicorn worker runs it (the deferred writer is a greenlet there). Prints what it left, as JSON.

Usage: python -m tests.pool_burst_gevent POSTGRES_URL INSTANCE_DIR
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402

from kyma import db  # noqa: E402

BURST = 20


def main(url: str, instance: str) -> dict:
    db.POOL_WAIT_SECONDS = 0.05  # a short wait, so that the pool is found full at once
    from kyma import chat as pipeline
    from kyma.cli import create_or_migrate_schema
    from kyma.factory import create_app
    from kyma.models import Hold, LedgerEntry, RequestLog
    from kyma.services import deferred, ledger
    from tests.conftest import register

    app = create_app({"instance_dir": Path(instance), "database_url": url, "secret_key": "test", "bcrypt_rounds": 4,
                      "sim_base_port": 1, "database_pool_size": 1, "signup_max_per_hour": 100000,
                      "allowed_hosts": ("localhost",)})
    with app.app_context():
        create_or_migrate_schema()
    reg = register(app.test_client(), "burst@example.com")
    account = int(reg["user_id"])
    with app.app_context():
        start = ledger.balance(account).balance_micros
        db.close_connection()
    taken, give_back, hog = Event(), Event(), []

    def take_the_pool() -> None:
        while True:  # a request may hold the connection for a moment: wait it out
            try:
                db.database.obj.connect()
                break
            except Exception:
                continue
        taken.set()
        give_back.wait()
        db.database.obj.close()

    real = pipeline.complete

    def then_the_pool_fills(rt, prep):
        db.release_connection()
        if not hog:
            hog.append(gevent.spawn(take_the_pool))
        taken.wait()
        return real(rt, prep)

    pipeline.complete = then_the_pool_fills
    client, answers = app.test_client(), []

    def ask() -> None:
        r = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {reg['api_key']}"},
                        json={"model": "kimi-k2.5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
        answers.append((r.status_code, r.headers.get("Retry-After"), r.headers["X-Request-Id"]))

    # The first request alone takes a hold and reaches the upstream call, where the pool fills; the rest of
    # the burst then finds it full. Sent all at once, how far each got before the pool filled was up to
    # the scheduler, and at times none got as far as a hold.
    first = gevent.spawn(ask)
    assert taken.wait(30), "the first request never reached the upstream call"
    gevent.joinall([first, *(gevent.spawn(ask) for _ in range(BURST - 1))], timeout=60)
    owed = deferred.pending()
    give_back.set()
    drained = deferred.drain(30)
    with app.app_context():
        rows = [RequestLog.select().where((RequestLog.request_id == rid) & (RequestLog.status == 503)
                                          & (RequestLog.error_code == "gateway_busy")).count() for _, _, rid in answers]
        return {"answers": sorted({(s, ra) for s, ra, _ in answers}), "count": len(answers), "owed": owed,
                "drained": drained, "rows": rows, "open_holds": Hold.select().where(Hold.closed_at.is_null()).count(),
                "holds_taken": LedgerEntry.select().where(LedgerEntry.kind == "hold").count(),
                "balance_back": ledger.balance(account).balance_micros == start, "check": ledger.check_ledger()}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2]), default=str))
