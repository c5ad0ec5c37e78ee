# make demo   — install (once) and run the CPU demo recipe egs2/mini_espeak/s2t1 end to end
# make test   — install (once) and run the test suite
# Needs only Python 3.11 (python3.11 or python3 on PATH); everything else goes into .venv.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1

.PHONY: install test test-slow test-official lock demo clean

install: $(STAMP)

$(STAMP): setup.py constraints.txt
	@echo "== creating $(VENV) and installing the tested stack of constraints.txt (about 5 GB, 1-3 min)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q "uv==0.13.9"
	$(VENV)/bin/uv pip install --python $(PY) -c constraints.txt -e ".[test]" "setuptools>=61,<74"
	touch $(STAMP)

# make lock — re-resolve setup.py's ranges to the newest versions and write them to constraints.txt (then run
# make clean test, and commit constraints.txt if the tests pass)
lock: install
	echo "setuptools>=61,<74" > constraints.build.txt
	$(VENV)/bin/uv pip compile --python-version 3.11 --extra test setup.py constraints.build.txt \
		--no-header --no-annotate -o constraints.txt.new
	{ sed -n '1,2p' constraints.txt; cat constraints.txt.new; } > constraints.txt.tmp
	rm constraints.txt.new constraints.build.txt && mv constraints.txt.tmp constraints.txt

test: install
	$(PY) -m pytest tests

# make test-official — our scoring against the official MCIF evaluation code (mcif-bench 1.0 and the versions it
# pins), installed from PyPI into .official/ beside our environment, never into it (docs/scoring.md)
OFFICIAL := .official
test-official: install
	$(PY) -m pip install -q --no-deps --target $(OFFICIAL) mcif-bench==1.0 jiwer==3.0.5 whisper-normalizer==0.0.10 \
		mweralign==1.4.1
	MCIF_ORACLE_DIR=$(CURDIR)/$(OFFICIAL) $(PY) -m pytest tests/test_scoring_oracle.py

# make test-slow — the slow tests (real-size architectures on CPU, long runs); not part of make test or CI
test-slow: install
	$(PY) -m pytest tests -m slow

demo: install
	cd egs2/mini_espeak/s2t1 && ./run.sh

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

# make bench  — speed and memory benchmarks (features, bucketing, trainer overhead, decoding, real-size step,
# peak RSS) on the installed venv, one thread; writes bench/results.json and bench/README.md (P5: bench/p5_demo.sh)
.PHONY: bench
bench: install
	OMP_NUM_THREADS=1 $(PY) bench/run.py

# make rehearsal — stages 1-7 of egs2/iwslt25_if/s2t1 with real-size random-weight models on CPU (~50 min, ~21 GB RAM,
# ~50 GB disk at its peak); report in egs2/iwslt25_if/s2t1/exp/rehearsal/report.md (docs/rehearsal.md).
# REHEARSAL_ARGS passes options, e.g. REHEARSAL_ARGS="--corpora_root /data/corpora --cleanup true"
.PHONY: rehearsal
rehearsal: install
	cd egs2/iwslt25_if/s2t1 && OMP_NUM_THREADS=1 ./run.sh --rehearsal true $(REHEARSAL_ARGS)
