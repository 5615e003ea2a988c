# Vigil: `make demo` runs the product on this machine, `make test` runs the test suite.
# Both create .venv with the python3 on PATH (3.11+) and reinstall requirements only when they change.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
STAMP_RUNTIME := $(VENV)/.installed-runtime
STAMP_DEV     := $(VENV)/.installed-dev
# The demo's embedded MQTT broker (amqtt) lives in its own virtualenv: its pins clash with the web server's.
BROKER_VENV   := .venv-mqtt-broker
STAMP_BROKER  := $(BROKER_VENV)/.installed

.PHONY: demo test bench lint contracts format clean venv edge-offline edge-online

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Vigil needs Python 3.11+, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)

$(STAMP_RUNTIME): requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

$(STAMP_DEV): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@ $(STAMP_RUNTIME)

$(STAMP_BROKER): requirements-broker.txt | $(PY)
	$(PYTHON) -m venv $(BROKER_VENV)
	$(BROKER_VENV)/bin/python -m pip install --quiet -r requirements-broker.txt
	@touch $@

venv: $(STAMP_RUNTIME)

## demo: migrate, seed the demo plant and run web + worker + Redis + simulator + MQTT broker and bridge
## (Ctrl-C stops all);
## DATA=skab also replays a real SKAB pump fault from VIGIL_DATA_DIR (see README, "Real datasets")
demo: $(STAMP_RUNTIME) $(STAMP_BROKER)
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py collectstatic --noinput -v 0
	exec $(PY) manage.py demo --port $(PORT)$(if $(DATA), --data $(DATA))

## edge-offline / edge-online: cut / restore the demo edge agent's link to the server (`make demo` prints it)
EDGE_FLAG := $(or $(VIGIL_VAR_DIR),var)/demo/edge-offline
edge-offline:
	@mkdir -p $(dir $(EDGE_FLAG)) && touch $(EDGE_FLAG) && echo "edge agent cut off from the server ($(EDGE_FLAG)); it keeps deciding locally"
edge-online:
	@rm -f $(EDGE_FLAG) && echo "edge agent back online: it forwards its queue"

## test: the whole pytest suite (SQLite + in-process fakes unless DATABASE_URL / REDIS_URL are set)
# Tests marked postgres fail on another database (never skip): the SQLite run leaves them out.
PG_TESTS := $(if $(filter postgres%,$(DATABASE_URL)),,-m "not postgres")
test: $(STAMP_DEV) $(STAMP_BROKER)
	@$(PY) -m pytest $(PG_TESTS) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

## bench: ingest throughput through the API vs raw COPY (needs DATABASE_URL pointing at PostgreSQL),
## explanation speed vs shap.KernelExplainer and edge-runner latency (bench/explain.py, no database)
bench: $(STAMP_DEV)
	$(PY) bench/ingest.py
	$(PY) bench/explain.py

lint: $(STAMP_DEV)
	$(PY) -m ruff check --line-length 110 .
	$(PY) -m ruff format --line-length 110 --check .

## contracts: the import-linter contracts in .importlinter (detection imports no Django and no app)
contracts: $(STAMP_DEV)
	$(VENV)/bin/lint-imports --no-cache

format: $(STAMP_DEV)
	$(PY) -m ruff format --line-length 110 .

## clean: remove the virtualenv, the local database and collected static files
clean:
	rm -rf $(VENV) $(BROKER_VENV) var staticfiles .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
