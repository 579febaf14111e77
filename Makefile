# One-command workflows. Every target installs first (once, through a stamp file).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DATA := data/demo
SMOKE_DATA := data/smoke

.PHONY: install demo demo-quadruped test test-fast test-avx2 smoke stats lint clean

install: $(STAMP)

# xtcocotools' wheel is built against numpy 1 and breaks under numpy 2, so it is compiled here
# against the numpy we pin (numpy and cython first, then no build isolation).
$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q numpy==2.4.6 cython==3.3.1 setuptools wheel
	$(PY) -m pip install -q --no-build-isolation --no-binary xtcocotools xtcocotools==1.14.3
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py --data $(DEMO_DATA)

# The embedded non-human example: quadrupeds in AP-10K's layout (conf/keypoints/quadruped.yaml).
demo-quadruped: $(STAMP)
	$(PY) scripts/demo.py --subject quadruped --data data/demo_quadruped

test: $(STAMP)
	$(PY) -m pytest -q

# The tests that start no process (training, evaluation, torchrun, scripts): the quick loop.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# The suite as a CPU without AVX-512 runs it (an AVX2-only EPYC, say): torch, oneDNN, MKL and numpy
# kept to AVX2. Compiled kernels get a cache of their own: torch's cache does not key them on
# ATEN_CPU_CAPABILITY, and AVX-512 kernels reused under it give wrong results or crash.
test-avx2: $(STAMP)
	ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
	NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR" \
	TORCHINDUCTOR_CACHE_DIR=$${TMPDIR:-/tmp}/pose-inductor-avx2-$$(id -u) $(PY) -m pytest -q

smoke: $(STAMP)
	$(PY) scripts/smoke.py --data $(SMOKE_DATA)

stats: $(STAMP)
	$(PY) scripts/model_stats.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
