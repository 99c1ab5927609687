# The two commands of the README: `make serve` and `make test`. Each sets up what it needs
# (a virtual environment with the project installed) on a machine with Python and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
STAMP := $(VENV)/.installed

.PHONY: serve test install schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/sessiongraph demo --if-empty
	$(BIN)/sessiongraph serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Rewrites the committed SDL after a deliberate change to the schema.
schema: $(STAMP)
	$(BIN)/sessiongraph export-schema > schema/schema.graphql

clean:
	rm -rf $(VENV) sessiongraph.db sessiongraph.db-wal sessiongraph.db-shm
