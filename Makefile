# One-command workflows. Every target installs first (once, through a stamp file).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DATA := data/demo
SMOKE_DATA := data/smoke

.PHONY: install demo test smoke stats lint clean

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

test: $(STAMP)
	$(PY) -m pytest -q

smoke: $(STAMP)
	$(PY) scripts/smoke.py --data $(SMOKE_DATA)

stats: $(STAMP)
	$(PY) scripts/model_stats.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
