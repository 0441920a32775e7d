# calcimg: `make demo` and `make test` work on a fresh clone with only Python 3.11+ installed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DATA := sample_data/demo

.PHONY: demo test lint bench clean-demo notebooks

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(DEMO_DATA)/.complete: $(STAMP)
	$(VENV)/bin/calcimg phantom $(DEMO_DATA) --preset demo --seed 0
	touch $@

demo: $(STAMP) $(DEMO_DATA)/.complete
	$(VENV)/bin/calcimg extract $(DEMO_DATA) --out out; status=$$?; \
	echo; echo "Results: $(CURDIR)/out/lesions.csv and $(CURDIR)/out/series.csv"; \
	test $$status -eq 0

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks notebooks
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks notebooks

# notebooks/html/*.html: both notebooks executed on the demo data (out/ is made if missing)
notebooks: $(STAMP) $(DEMO_DATA)/.complete
	cd notebooks && CALCIMG_LINKS=file ../$(PY) -m nbconvert --to html --execute \
		--ExecutePreprocessor.timeout=600 --output-dir html inspect_study.ipynb batch_overview.ipynb

bench: $(STAMP)
	$(PY) benchmarks/bench_load.py

clean-demo:
	rm -rf $(DEMO_DATA) out
