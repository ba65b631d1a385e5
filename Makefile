# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# No model or data set hub at run time: everything is packaged or local.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: install run test bench clean

install: $(STAMP)

# constraints.txt pins the CPU torch wheel on local disk; the package itself only asks for a range.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

run: install
	$(OFFLINE) $(BIN)/matrixeval run

test: install
	$(OFFLINE) $(BIN)/python -m pytest -q

bench: install
	$(OFFLINE) $(BIN)/python benchmarks/bench_metrics.py
	$(OFFLINE) $(BIN)/python benchmarks/bench_pipeline.py
	$(OFFLINE) $(BIN)/python benchmarks/bench_process.py
	$(OFFLINE) $(BIN)/python benchmarks/bench_gpu.py

clean:
	rm -rf $(VENV) results .pytest_cache
