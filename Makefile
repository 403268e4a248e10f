# Everyday commands. `make run` is all a new checkout needs.
#
# Steps that are slow the first time are remembered: the virtual environment is
# keyed on a hash of requirements.txt (what the site runs on) and, for the tests,
# of requirements-dev.txt (stamp files in .venv), and system packages are only
# installed when dpkg says they are missing.

PYTHON ?= python3
PY := .venv/bin/python
ADDRESS ?= 127.0.0.1:8000
PYTEST_ARGS ?=
SYSTEM_PACKAGES := libfluidsynth3 fluidsynth ffmpeg fluid-soundfont-gm chromium

REQUIREMENTS_HASH := $(shell sha256sum requirements.txt 2>/dev/null | cut -c1-16)
DEV_REQUIREMENTS_HASH := $(shell cat requirements.txt requirements-dev.txt 2>/dev/null | sha256sum | cut -c1-16)
VENV_STAMP := .venv/.requirements-$(REQUIREMENTS_HASH)
DEV_STAMP := .venv/.dev-requirements-$(DEV_REQUIREMENTS_HASH)

.DEFAULT_GOAL := help
.PHONY: help run install system venv dev migrate check lint test bench stress load throughput evaluate train \
	train-scratch device-bundle

help:
	@echo "make run       install what is missing, migrate, start the site on http://$(ADDRESS)/ and one worker"
	@echo "make install   system packages and the virtual environment"
	@echo "make venv      only the virtual environment (.venv, from requirements.txt)"
	@echo "make dev       the virtual environment with the test tools (requirements-dev.txt)"
	@echo "make test      the linter, the type checker and the test suite (PYTEST_ARGS='-k render' to select)"
	@echo "make lint      only ruff and mypy (configured in pyproject.toml)"
	@echo "make check     Django system checks, including the rendering tools"
	@echo "make bench     generation and rendering benchmarks -> bench/results.json"
	@echo "make stress    100 requests from 10 users at once against a live site (STRESS_ARGS='--backend postgres')"
	@echo "make load      read traffic at 10, 50 and 100 users against gunicorn, PostgreSQL, Redis -> bench/load.json"
	@echo "make throughput  pieces per minute with 1, 2 and 4 worker processes -> bench/throughput.json"
	@echo "make evaluate  model evaluation -> reports/"
	@echo "make train     train a model on the corpus -> data/models/default.keras"
	@echo "make train-scratch  the next model from scratch (SCRATCH_INIT= to go on from a checkpoint, SCRATCH_TEACHER= to distil)"
	@echo "make device-bundle  wheels and the corpus for training on a GPU machine -> .device/"

run: install migrate
	@ADDRESS=$(ADDRESS) .ci/serve $(PY)

install: system venv
	@# One line about what rendering still lacks (e.g. apt failed without sudo), SOUNDFONT_PATH included.
	@$(PY) -c "import os; from ml.audio.render import check_tools; p = check_tools(os.environ.get('SOUNDFONT_PATH') or None); print('Warning: audio rendering will fail: ' + '; '.join(p)) if p else None"

# Installing system packages needs root or sudo; without them `run` goes on and
# `install` reports what is missing.
system:
	@.ci/system-packages $(SYSTEM_PACKAGES) || echo "Warning: could not install system packages; see above."

venv: $(VENV_STAMP)

$(VENV_STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv .venv || { \
		echo "Creating .venv failed; on Debian install python3-venv:"; \
		.ci/system-packages python3-venv && $(PYTHON) -m venv .venv; }
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@rm -f .venv/.requirements-*
	@touch $@

dev: $(DEV_STAMP)

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(VENV_STAMP)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	@rm -f .venv/.dev-requirements-*
	@touch $@

migrate: venv
	$(PY) manage.py migrate --noinput

check: venv
	$(PY) manage.py check

lint: dev
	$(PY) -m ruff check .
	$(PY) -m mypy

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: migrate
	$(PY) manage.py bench

STRESS_ARGS ?=
stress: dev
	$(PY) -m tests.stress $(STRESS_ARGS)

LOAD_ARGS ?=
load: dev
	@command -v wrk >/dev/null || .ci/system-packages wrk
	$(PY) -m tests.load $(LOAD_ARGS)

THROUGHPUT_ARGS ?=
throughput: dev
	$(PY) -m tests.throughput $(THROUGHPUT_ARGS)

# The corpus, parsed once (minutes) into per-style caches and one merged dataset file.
CORPUS := data/corpus-1500.npz
MODEL ?= ml/pretrained/default.keras
PIECES_PER_STYLE ?= 100

# Rebuilt when the extraction changes (from the per-style caches where their extractor version still holds).
$(CORPUS): ml/data/datasets.py ml/data/notes.py | $(VENV_STAMP)
	$(PY) manage.py import_dataset corpus --max-pieces-per-style 1500 --out $@

evaluate: venv $(CORPUS)
	$(PY) manage.py evaluate --model $(MODEL) --dataset $(CORPUS) --out reports/ --pieces-per-style $(PIECES_PER_STYLE) --seconds 30

train: venv $(CORPUS)
	$(PY) manage.py train --dataset $(CORPUS) --out data/models/default.keras --max-minutes 60

# The next model, trained from scratch (ml/model/scratch.py; the model card's "Retraining from
# scratch"), a session at a time on 2 CPU cores, each going on from the checkpoint the last one left.
SCRATCH_OUT ?= data/models/scratch.keras
SCRATCH_MINUTES ?= 100
SCRATCH_INIT ?=
SCRATCH_SEED ?= 91
SCRATCH_LR ?= 0.002
SCRATCH_TEACHER ?=
SCRATCH_ANCHOR ?= 1.0
train-scratch: venv $(CORPUS)
	$(PY) -m ml.model.scratch --dataset $(CORPUS) --out $(SCRATCH_OUT) --minutes $(SCRATCH_MINUTES) \
	    --seed $(SCRATCH_SEED) --learning-rate $(SCRATCH_LR) --checkpoint $(SCRATCH_OUT:.keras=.weights.h5) \
	    $(if $(SCRATCH_INIT),--init $(SCRATCH_INIT)) \
	    $(if $(SCRATCH_TEACHER),--teacher $(SCRATCH_TEACHER) --anchor $(SCRATCH_ANCHOR))

# What a GPU machine (Python 3.12 with JAX, no Keras) needs to run `python -m ml.model.scratch`: the
# wheels of Keras and pretty_midi with the dependencies JAX does not bring, and the corpus.
DEVICE_PYTHON ?= 3.12
DEVICE_WHEELS = keras==$$($(PY) -c "import importlib.metadata as m; print(m.version('keras'))") \
	absl-py rich markdown-it-py mdurl pygments namex h5py optree ml-dtypes packaging typing-extensions \
	pretty_midi mido six importlib_resources
device-bundle: venv $(CORPUS)
	rm -rf .device/wheels && mkdir -p .device/wheels
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version $(DEVICE_PYTHON) \
	    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --dest .device/wheels $(DEVICE_WHEELS)
	cp $(CORPUS) .device/
