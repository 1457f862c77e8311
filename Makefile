# The two commands of the README: `make demo` and `make test`. Both set up .venv first (idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test demo bench lint env clean-venv

setup:
	bash tools/setup_env.sh

test: setup
	$(PY) -m pytest

demo: setup
	$(PY) tools/demo/run_demo.py

bench: setup
	$(PY) tools/benchmarks/run_all.py

lint: setup
	$(VENV)/bin/ruff check .

env: setup
	$(PY) -m soco.collect_env

clean-venv:
	rm -rf $(VENV) .setup-logs
