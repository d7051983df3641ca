# The two front-door commands: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha256sum requirements.txt | cut -c1-12)

.PHONY: run test setup db bench soak clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

# The last 0.x anthropic SDK cannot share .venv with 2.x: tests/test_anthropic_legacy_sdk.py runs it from here.
LEGACY       := $(VENV)-anthropic0
LEGACY_STAMP := $(LEGACY)/.installed-$(shell sha256sum requirements-legacy-sdk.txt | cut -c1-12)

$(LEGACY_STAMP): requirements-legacy-sdk.txt
	test -x $(LEGACY)/bin/python || $(PYTHON) -m venv $(LEGACY)
	$(LEGACY)/bin/pip install -q --disable-pip-version-check -r requirements-legacy-sdk.txt
	rm -f $(LEGACY)/.installed-* && touch $@

setup: $(STAMP)

db: setup
	$(BIN)/flask --app app init-db

## make run: set up, migrate the SQLite database and start the gateway with simulated providers.
run: db
	$(BIN)/python -m kyma.launcher

## make test: set up and run every test (unit, integration, browser, notebooks).
test: setup $(LEGACY_STAMP)
	$(BIN)/python -m pytest -q tests
	@# The integration suite again on PostgreSQL + Redis, when both answer on 127.0.0.1 (as on CI).
	@if $(BIN)/python -c "from tests.pg import postgres_unavailable as p, redis_unavailable as r; raise SystemExit(bool(p() or r()))"; then \
	  KYMA_TEST_BACKEND=postgres $(BIN)/python -m pytest -q -m "integration and not postgres and not browser" tests; \
	else echo "PostgreSQL/Redis not answering on 127.0.0.1: scale-out pass skipped"; fi
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	  $(BIN)/python -m pytest -q -p no:cacheprovider --nbval --nbval-current-env \
	    --nbval-sanitize-with notebooks/sanitize.cfg notebooks; fi

bench: setup
	$(BIN)/python bench/run.py

## make soak: before each release, five minutes of mixed load on 2 and on 4 workers, then a check
## of the database they left (SQLite integrity, ledger, every success logged and billed).
SOAK_SECONDS ?= 300
soak: setup
	$(BIN)/python -m bench.soak --workers 2 --seconds $(SOAK_SECONDS)
	$(BIN)/python -m bench.soak --workers 4 --seconds $(SOAK_SECONDS)

clean:
	rm -rf $(VENV) $(LEGACY) instance/*.db* test-artifacts .pytest_cache .hypothesis .schemathesis
