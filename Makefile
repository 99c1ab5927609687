# The two commands of the README: `make serve` and `make test`. Each sets up what it needs
# (a virtual environment with the project installed) on a machine with Python and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
STAMP := $(VENV)/.installed

.PHONY: serve test install schema clean bench bench-compare explorer-assets faults

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/sessiongraph serve --demo --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest -rs $(PYTEST_ARGS)

# Rewrites the committed SDL after a deliberate change to the schema.
schema: $(STAMP)
	$(BIN)/sessiongraph export-schema > schema/schema.graphql

# GraphiQL's browser build, fetched from npm at the versions pinned in the script, into
# explorer/static/ (committed: the package ships it, so the explorer needs no CDN).
explorer-assets:
	explorer/refresh-assets.sh

# Load benchmarks against the hand-written floor (and, bench-compare, PostGraphile): see
# bench/RESULTS.md. Not part of `make test`; bench/run.py installs wrk (apt-get) when it can.
# BENCH_ARGS passes options, e.g. BENCH_ARGS="--databases sqlite --duration 5".
BENCH_POSTGRES_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/sessiongraph_bench

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/run.py --postgres-url $(BENCH_POSTGRES_URL) $(BENCH_ARGS)
	$(BIN)/python bench/downloads.py
	$(BIN)/python bench/otlp.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/limits.py

bench-compare: $(STAMP)
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/run.py --compare --postgres-url $(BENCH_POSTGRES_URL) $(BENCH_ARGS)
	test -d tests/federation/node_modules || (cd tests/federation && npm ci --no-audit --no-fund --loglevel=error)
	$(BIN)/python bench/gateway.py --databases postgresql --postgres-url $(BENCH_POSTGRES_URL)_federation $(BENCH_ARGS)

# The fault suite (faults/): kill -9 of the server and of the import, a private PostgreSQL
# (initdb with the machine's binaries) restarted and frozen, SQLite written by several
# processes. FAULTS_ARGS passes options, e.g. FAULTS_ARGS="--trials 2 --databases sqlite".
FAULTS_POSTGRES_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

faults: $(STAMP)
	$(BIN)/python -m sessiongraph.faults --postgres-url $(FAULTS_POSTGRES_URL) $(FAULTS_ARGS)

clean:
	rm -rf $(VENV) sessiongraph.db sessiongraph.db-wal sessiongraph.db-shm
