# Two commands matter: `make demo` (set up, then run the whole pipeline on the demo corpus) and
# `make test` (set up, then run the tests). Both install what they need on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME := $(CURDIR)/.prefect

.PHONY: setup system demo dag test ui lint benchmark clean-cache

setup: system $(VENV)/.installed

system:
	@bash scripts/install_system.sh

$(VENV)/.installed: requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	@touch $@

demo: setup
	python -m pipeline.dag
	dvc repro
	python -m pipeline.report
	python -m pipeline.report --demo-json benchmarks/results/demo.json

# dvc.yaml's model stages depend on each model's own feature files and `speaker` on LipSyncNet only
# when speaker.method reads it: rerun after editing a model's inputs, a refine block or speaker.method.
dag: setup
	python -m pipeline.dag

test: setup
	python -m pytest -q

ui: setup
	python -m flows.server

lint: setup
	ruff check .

benchmark: setup
	python benchmarks/pipeline.py

clean-cache:
	rm -rf .cache
