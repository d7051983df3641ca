"""Shared fixtures: an in-process app for unit tests, real processes for integration tests."""

from __future__ import annotations

import pytest

from tests.servers import (SIMULATED_PROVIDERS, free_port_block, gateway_env, start_gateway,
                           start_simulator)


@pytest.fixture()
def app(tmp_path):
    """An app on a fresh SQLite database (schema created), for the Flask test client."""
    from kyma.cli import create_or_migrate_schema
    from kyma.factory import create_app

    app = create_app({
        "instance_dir": tmp_path,
        "database_url": f"sqlite:///{tmp_path / 'kyma.db'}",
        "secret_key": "test-secret",
        "bcrypt_rounds": 4,
    })
    app.config["TESTING"] = True
    create_or_migrate_schema()
    return app


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def simulators(tmp_path_factory):
    """The three simulated providers on consecutive ports (KYMA_SIM_BASE_PORT + 0, 1, 2)."""
    workdir = tmp_path_factory.mktemp("sims")
    base = free_port_block(len(SIMULATED_PROVIDERS))
    procs = [start_simulator(name, base + i, workdir) for i, name in enumerate(SIMULATED_PROVIDERS)]
    yield base, procs
    for p in procs:
        p.stop()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory, simulators):
    """A gateway under gunicorn (2 gevent workers) routed to the simulators."""
    workdir = tmp_path_factory.mktemp("gateway")
    base, _ = simulators
    proc = start_gateway(workdir, gateway_env(workdir, base))
    yield proc
    proc.stop()
