# The two front-door commands: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# What the gateway needs to run (make run), and what tests, notebooks and benchmarks add (make setup).
RUN_STAMP := $(VENV)/.installed-run-$(shell sha256sum requirements.txt | cut -c1-12)
DEV_STAMP := $(VENV)/.installed-dev-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)

.PHONY: run test test-sqlite test-postgres test-notebooks setup db bench bench-peers soak notebooks clean

$(RUN_STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-run-* && touch $@

$(DEV_STAMP): $(RUN_STAMP) requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	rm -f $(VENV)/.installed-dev-* && touch $@

# The last 0.x anthropic SDK cannot share .venv with 2.x: tests/test_anthropic_legacy_sdk.py runs it from here.
LEGACY       := $(VENV)-anthropic0
LEGACY_STAMP := $(LEGACY)/.installed-$(shell sha256sum requirements-legacy-sdk.txt | cut -c1-12)

$(LEGACY_STAMP): requirements-legacy-sdk.txt
	test -x $(LEGACY)/bin/python || $(PYTHON) -m venv $(LEGACY)
	$(LEGACY)/bin/pip install -q --disable-pip-version-check -r requirements-legacy-sdk.txt
	rm -f $(LEGACY)/.installed-* && touch $@

# The real Claude Code and Codex CLI, for tests/test_real_agents.py, from the npm registry when npm is
# here; without them those tests are skipped (and say why).
AGENT_PACKAGES := @anthropic-ai/claude-code@2.1.332 @openai/codex@0.171.0
AGENTS         := $(VENV)-agents
AGENTS_STAMP   := $(AGENTS)/.installed-$(shell echo "$(AGENT_PACKAGES)" | sha256sum | cut -c1-12)

$(AGENTS_STAMP):
	@if command -v npm >/dev/null 2>&1; then \
	  if npm install --silent --no-audit --no-fund --prefix $(AGENTS) $(AGENT_PACKAGES); then \
	    rm -f $(AGENTS)/.installed-* && touch $@; \
	  else echo "npm could not install $(AGENT_PACKAGES): the real-agent tests will be skipped"; fi; \
	else echo "npm not found: the real-agent tests will be skipped"; fi

setup: $(DEV_STAMP) $(LEGACY_STAMP) $(AGENTS_STAMP)

db: $(RUN_STAMP)
	$(BIN)/flask --app app init-db

## make run: set up, migrate the SQLite database and start the gateway with simulated providers.
run: db
	$(BIN)/python -m kyma.launcher

# Test processes (pytest, and the gateways, simulators and CLIs it starts) keep compiled modules, so
# each one reads bytecode instead of compiling the project from source again; where a machine sets
# PYTHONDONTWRITEBYTECODE, none would. The cache lives under .venv, so the work tree stays clean.
# Set on the test commands only: a target's exported variables would reach the installs it depends on.
TEST_PY := env PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$(CURDIR)/$(VENV)/pycache $(BIN)/python
PYTEST  := $(TEST_PY) -m pytest

## make test: set up, then three passes side by side: every test on SQLite (unit, integration with real
## processes, browser); the integration tests again on PostgreSQL + Redis; the notebooks under nbval.
## Each pass's output is shown whole when it ends; `make test-sqlite` (and the others) runs one alone.
test: $(DEV_STAMP) $(LEGACY_STAMP) $(AGENTS_STAMP)
	@# Much of every pass is waiting (upstream timeouts, slowed simulators, server start-ups, the
	@# soak's fixed length): side by side, one pass computes while another waits. Every pass starts its
	@# own servers on free ports and PostgreSQL databases are throw-away, so nothing is shared.
	@$(MAKE) --no-print-directory -j3 --output-sync=target test-sqlite test-postgres test-notebooks

test-sqlite: $(DEV_STAMP) $(LEGACY_STAMP) $(AGENTS_STAMP)
	@# Four pytest workers: each starts its own gateways and simulators on free ports, and the
	@# PostgreSQL tests make throw-away databases, so nothing is shared between them. A test module
	@# stays on one worker, so a module's own gateway starts once. This pass is the longest and much
	@# of it waits (upstream timeouts, slowed simulators, browsers): more workers than cores keep the
	@# cores busy while some wait, at the cost of one more start and collection each.
	$(PYTEST) -q -n 4 --dist loadfile tests

test-postgres: $(DEV_STAMP) $(LEGACY_STAMP)
	@# The integration suite again on PostgreSQL + Redis, when both answer on 127.0.0.1 (as on CI), but
	@# for the tests that would only repeat there what others check (see pytest.ini's markers).
	@if $(TEST_PY) -c "from tests.pg import postgres_unavailable as p, redis_unavailable as r; raise SystemExit(bool(p() or r()))"; then \
	  KYMA_TEST_BACKEND=postgres $(PYTEST) -q -n 2 --dist loadfile \
	    -m "integration and not postgres and not browser and not no_database and not client_protocol" tests; \
	elif [ -n "$(KYMA_REQUIRE_SCALE_OUT)" ]; then echo "PostgreSQL/Redis not answering on 127.0.0.1, and KYMA_REQUIRE_SCALE_OUT is set"; exit 1; \
	else echo "PostgreSQL/Redis not answering on 127.0.0.1: scale-out pass skipped"; fi

test-notebooks: $(DEV_STAMP)
	@# One process, no pytest workers: this pass ends long before the first, and two workers would
	@# each import nbval again (the controller does too) on the cores the other passes need.
	@# pytest.ini's addopts apply here too: no .pytest_cache is written (-p no:cacheprovider).
	@# notebooks/lean_imports.py loads before nbval, to spare it an import it never uses.
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	  $(PYTEST) -q -p notebooks.lean_imports -p nbval --nbval \
	    --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg notebooks; fi

bench: $(DEV_STAMP)
	$(BIN)/python -m bench.run

## make bench-peers: this gateway (1 and 2 workers) beside Portkey and LiteLLM in one run, through the
## peer harness, which lives outside the repository (BENCH_PEERS). ROUNDS=1 for a quick look;
## BASE_REV=<rev> adds that revision as a target; PG=1 and PG_PAIR=1 add PostgreSQL + Redis targets.
BENCH_PEERS ?= ../shared/bench-peers
bench-peers: $(DEV_STAMP)
	BENCH_PEERS="$(BENCH_PEERS)" bash bench/peers.sh

## make soak: before each release, five minutes of mixed load on 2 and on 4 workers, then a check
## of the database they left (SQLite integrity, ledger, every success logged and billed).
SOAK_SECONDS ?= 300
soak: $(DEV_STAMP)
	$(BIN)/python -m bench.soak --workers 2 --seconds $(SOAK_SECONDS)
	$(BIN)/python -m bench.soak --workers 4 --seconds $(SOAK_SECONDS)

## make notebooks: JupyterLab on notebooks/, with the project's environment as its kernel.
notebooks: $(DEV_STAMP)
	PYTHONPATH=$(CURDIR) $(BIN)/jupyter lab --notebook-dir=notebooks --ip=127.0.0.1 --no-browser --allow-root

clean:
	rm -rf $(VENV) $(LEGACY) $(AGENTS) instance/*.db* test-artifacts .pytest_cache .hypothesis .schemathesis
