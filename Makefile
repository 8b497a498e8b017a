# The two commands the README promises: `make demo` and `make test`.
# Each creates .venv on first use and installs the package into it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck bench docs clean

BOT_REQUIREMENTS := examples/whatsapp_bot/requirements.txt

$(STAMP): pyproject.toml $(BOT_REQUIREMENTS)
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10) and "rapidfire needs Python 3.10+")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet -r $(BOT_REQUIREMENTS)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rapidfire demo

# A Redis on 127.0.0.1:6379 that answers is used too (database 9, and 11 for
# the two-database test) unless RAPIDFIRE_TEST_REDIS_URL names another; the
# pytest header says which servers the suite ran on.
test: $(STAMP)
	@url="$${RAPIDFIRE_TEST_REDIS_URL:-$$($(PYTHON) tests/local_redis.py 2>/dev/null)}"; \
	RAPIDFIRE_TEST_REDIS_URL="$$url" \
	RAPIDFIRE_TEST_OTHER_DB="$${RAPIDFIRE_TEST_OTHER_DB:-11}" \
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks

docs: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
