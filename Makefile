# Two entry points: `make sweep` and `make test`. Both build .venv themselves (plain venv + pip),
# and rebuild it when pyproject.toml changes.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PIP_FLAGS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
SWEEP ?= experiments/ablations.yaml

.PHONY: sweep test venv clean-venv

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q $(PIP_FLAGS) --upgrade pip
	# torch first and exactly pinned, so no resolver step can pull a CUDA build
	$(VENV)/bin/pip install -q $(PIP_FLAGS) torch==2.13.0
	$(VENV)/bin/pip install -q $(PIP_FLAGS) -e ".[dev,ray]"
	touch $(STAMP)

venv: $(STAMP)

sweep: $(STAMP)
	$(VENV)/bin/python -m fr_bench.sweep $(SWEEP)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests

clean-venv:
	rm -rf $(VENV)
