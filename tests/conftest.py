"""Shared fixtures: an in-process app for unit tests, real processes for integration tests."""

from __future__ import annotations

import jinja2
import pytest
import requests

from tests import url_builders
from tests.servers import gateway_env, reset_breakers, start_gateway, start_simulators, start_stack, stop_all

PASSWORD = "correct horse"
# Fixtures that start gunicorn or simulator processes: a test using one must be marked integration,
# or the PostgreSQL pass (`-m integration`) would silently leave it out.
PROCESS_FIXTURES = {"simulators", "gateway", "slow_gateway"}


# The modules that run longest, longest first (wall time per module, measured over both passes of
# `make test`: the PostgreSQL pass runs the same integration modules). A module stays on one pytest
# worker and xdist hands modules out in collection order (pytest.ini turns off its reordering by test
# count, which put these one- or few-test modules last and left one worker running them alone).
# Starting them first lets the many short modules fill in around them, so the workers end together.
LONGEST_MODULES = (
    "test_schemathesis.py", "test_accessibility.py", "test_soak.py", "test_schemathesis_upstream.py",
    "test_scale_out.py", "test_failover.py", "test_browser_pages.py", "test_browser.py", "test_browser_forms.py",
    "test_group_commit.py", "test_bad_input.py", "test_browser_chat.py", "test_auth.py", "test_chat_integration.py",
)


def _module_order(items) -> dict[str, int]:
    """Each module's place: the longest first, then the rest by number of tests, most first; the
    browser modules together, where the first of them would be, so that a pytest worker tends to run
    several in a row on one chromium (tests/browser.py)."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.nodeid.split("::", 1)[0]] = counts.get(item.nodeid.split("::", 1)[0], 0) + 1
    browsers = {item.nodeid.split("::", 1)[0] for item in items if item.get_closest_marker("browser")}

    def rank(module: str) -> tuple[int, int]:
        name = module.rsplit("/", 1)[-1]
        return (LONGEST_MODULES.index(name), 0) if name in LONGEST_MODULES else (len(LONGEST_MODULES), -counts[module])

    first_browser = min((rank(module) for module in browsers), default=None)

    def key(module: str) -> tuple:
        return (first_browser, rank(module)) if module in browsers else (rank(module), ())

    return {module: place for place, module in enumerate(sorted(counts, key=key))}


def pytest_sessionstart(session):
    """With KYMA_REQUIRE_SCALE_OUT set (CI), PostgreSQL or Redis being down fails the run instead of
    skipping the tests that need them: a green run must not mean they never ran."""
    import os

    from tests.pg import postgres_unavailable, redis_unavailable

    if os.environ.get("KYMA_REQUIRE_SCALE_OUT") and (reason := postgres_unavailable() or redis_unavailable()):
        pytest.exit(f"KYMA_REQUIRE_SCALE_OUT is set, but {reason}", returncode=1)


def pytest_sessionfinish(session):
    """The PostgreSQL pass's throw-away databases go when the session (or an xdist worker's) ends."""
    from tests.pg import drop_made

    drop_made()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After the last of a row of browser tests (their fixtures torn down), close the shared chromium."""
    yield
    if item.get_closest_marker("browser") and (nextitem is None or not nextitem.get_closest_marker("browser")):
        from tests.browser import SHARED

        SHARED.close()


# The PostgreSQL pass runs integration tests only, so it does not import a test module whose source
# never says this: every import costs each of its pytest workers CPU. Browser modules take the marker
# from tests/browser.py, and that pass leaves browser tests out anyway.
INTEGRATION_MARK = "pytest.mark.integration"


def pytest_ignore_collect(collection_path, config):
    """In the PostgreSQL pass, skip test modules that mark no test integration."""
    from tests.pg import postgres_pass

    if postgres_pass() and collection_path.name.startswith("test_") and collection_path.suffix == ".py":
        return INTEGRATION_MARK not in collection_path.read_text(encoding="utf-8") or None
    return None


def pytest_collection_modifyitems(items):
    order = _module_order(items)
    items.sort(key=lambda item: order[item.nodeid.split("::", 1)[0]])  # stable: a module keeps its own order
    unmarked = [item.nodeid for item in items if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ()))
                and item.get_closest_marker("integration") is None]
    if unmarked:
        raise pytest.UsageError(f"tests that start processes need @pytest.mark.integration: {unmarked}")
    integration = {item.path for item in items
                   if item.get_closest_marker("integration") and not item.get_closest_marker("browser")}
    unseen = sorted(str(path) for path in integration if INTEGRATION_MARK not in path.read_text(encoding="utf-8"))
    if unseen:
        raise pytest.UsageError(f"the PostgreSQL pass would not import these modules: say {INTEGRATION_MARK} in them: {unseen}")


def register(target, email: str = "ada@example.com", password: str = PASSWORD) -> dict:
    """Register an account through a Flask test client or at a server's URL; the JSON answer."""
    body = {"email": email, "password": password}
    if isinstance(target, str):
        r = requests.post(f"{target}/v1/auth/register", json=body, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()
    resp = target.post("/v1/auth/register", json=body)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


@pytest.fixture(scope="session")
def schema_file(tmp_path_factory):
    """A SQLite file holding the gateway's schema and nothing else, made once per pytest process.

    Hundreds of tests each want a fresh database with the schema: a copy of this file is one, and
    copying it is much cheaper than creating every table and index again.
    """
    from kyma.cli import create_or_migrate_schema
    from kyma.db import database, init_db

    path = tmp_path_factory.mktemp("schema") / "kyma.db"
    bound = database.obj
    db = init_db(f"sqlite:///{path}")
    try:
        create_or_migrate_schema()
    finally:
        db.close()  # the last connection's close folds the WAL into the file
        database.initialize(bound)
    assert not path.with_name("kyma.db-wal").exists(), "the schema file must be one self-contained file"
    return path


class _TemplateCode(jinja2.BytecodeCache):
    """Compiled templates kept for every app of this pytest process: each test's fresh app would
    otherwise parse and compile every page it renders again (jinja checks each template's source
    against the checksum it was compiled from). Keyed by template only, so it holds while every app
    comes from create_app with the same jinja options and filters."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket) -> None:
        if bucket.key in self._code:
            bucket.bytecode_from_string(self._code[bucket.key])

    def dump_bytecode(self, bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


TEMPLATE_CODE = _TemplateCode()
url_builders.install()


@pytest.fixture()
def make_app(tmp_path, schema_file):
    """make_app(**settings) → an app on a fresh SQLite database with its schema, for the test client."""
    import shutil

    from kyma.cli import create_or_migrate_schema
    from kyma.factory import create_app

    def make(**settings):
        copied = "database_url" not in settings and not (tmp_path / "kyma.db").exists()
        if copied:
            shutil.copyfile(schema_file, tmp_path / "kyma.db")
        app = create_app({
            "instance_dir": tmp_path,
            "database_url": f"sqlite:///{tmp_path / 'kyma.db'}",
            "secret_key": "test-secret",
            "bcrypt_rounds": 4,
            "sim_base_port": 1,  # never the simulators of a `make run` on this machine: nothing listens there
            **settings,
        })
        app.jinja_env.bytecode_cache = TEMPLATE_CODE
        if not copied:  # a database the test chose, or one an earlier app of this test used: as init-db leaves it
            with app.app_context():
                create_or_migrate_schema()
        return app

    return make


@pytest.fixture()
def app(make_app):
    """An app on a fresh SQLite database (schema created), for the Flask test client."""
    app = make_app(
        signup_max_per_hour=100000,  # tests register many accounts from 127.0.0.1
        signup_max_global_per_hour=100000,
        # The test client's host, and the one the discovery and page tests publish for.
        allowed_hosts=("localhost", "gw.example", "gateway.test"),
    )
    app.config["TESTING"] = True
    return app


@pytest.fixture()
def sqlite_db(tmp_path):
    """A fresh SQLite database with the schema and no app, for plain service code (ledger, recording, …)."""
    from kyma.db import init_db
    from kyma.models import ALL_MODELS

    db = init_db(f"sqlite:///{tmp_path / 'kyma.db'}")
    db.create_tables(ALL_MODELS)
    yield db
    db.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_db(request, tmp_path):
    """The URL of a fresh database with the schema, once on SQLite and once on PostgreSQL (skipped when down)."""
    from tests.backends import schema_on

    with schema_on(request.param, tmp_path) as url:
        yield url


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def simulators(tmp_path_factory):
    """The three simulated providers on consecutive ports (KYMA_SIM_BASE_PORT + 0, 1, 2)."""
    workdir = tmp_path_factory.mktemp("sims")
    # Faults that sleep ("timeout", "stall") outlast the gateway's 2 s limits below, but not by much.
    base, sims = start_simulators(workdir, kyma_sim_timeout_seconds=5)
    yield base, sims
    stop_all(sims)


@pytest.fixture(scope="session")
def gateway(tmp_path_factory, simulators):
    """A gateway under gunicorn (2 gevent workers) routed to the simulators."""
    workdir = tmp_path_factory.mktemp("gateway")
    base, _ = simulators
    # Short upstream timeouts keep fault tests quick; a high breaker threshold keeps the shared
    # gateway's routing predictable (tests/test_breaker.py checks the breaker on its own gateway).
    env = gateway_env(workdir, base, KYMA_FIRST_BYTE_TIMEOUT=2, KYMA_FIRST_TOKEN_TIMEOUT=2, KYMA_IDLE_TIMEOUT=2,
                      KYMA_BREAKER_FAILURES=1000)
    proc = start_gateway(workdir, env, workers=2)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def slow_gateway(tmp_path_factory):
    """A gateway whose simulators stream 20 tokens a second, so a reply is still running when Stop arrives.

    One per pytest process, as `gateway` is: its tests each sign up an account of their own.
    """
    gw, sims = start_stack(tmp_path_factory.mktemp("slow"), {"kyma_sim_tokens_per_sec": "20"}, workers=1)
    yield gw
    stop_all([gw, *sims])


@pytest.fixture()
def account(gateway):
    """A fresh account on the shared gateway (its own rate-limit window and $0.50 signup credit)."""
    import uuid

    email = f"user-{uuid.uuid4().hex[:12]}@example.com"
    yield {"email": email, **register(gateway.url, email)}
    # Fault tests open circuits (Retry-After, failed probes) on this shared gateway: close them again.
    reset_breakers(gateway.env)


@pytest.fixture()
def oai(gateway, account):
    """The real openai SDK pointed at the shared gateway with a fresh account's key."""
    import openai

    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=account["api_key"], max_retries=0, timeout=30)
