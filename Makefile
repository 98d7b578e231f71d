# The two commands of the README: `make demo` (set up, run the demo campaign) and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo cafeni-small test lint bench clean

setup:
	bash scripts/setup.sh

# No foundation model can be downloaded here: the demo fine-tunes from a tiny stand-in
# pre-trained on EMT data (built once, ~4.5 min on 2 cores). With internet, name a MACE-MP model
# instead.
STANDIN := configs/al-loop-runs/standin-cu-ni-al.model

demo: setup
	$(BIN)/al-loop standin-foundation $(STANDIN) --elements Cu,Ni,Al
	$(BIN)/al-loop run configs/demo.yaml
	$(BIN)/al-loop distil configs/demo.yaml
	$(BIN)/al-loop phase configs/demo.yaml
	$(BIN)/al-loop db query configs/demo.yaml --limit 10

# Ca-Fe-Ni with real pw.x on small cells, end to end to the phase map and the DFT check
# (about 80 min on 2 shared cores; docs/tutorial-cafeni.md, docs/validation.md). Not a CI test.
cafeni-small: setup
	$(BIN)/al-loop setup pseudos configs/al-loop-runs/pseudos-fast --family fast
	$(BIN)/al-loop standin-foundation configs/al-loop-runs/standin-ca-fe-ni.model \
		--elements Ca,Fe,Ni --surrogates Al,Cu,Ni
	$(BIN)/al-loop run configs/cafeni-small.yaml
	$(BIN)/al-loop distil configs/cafeni-small.yaml --allow-unconverged
	$(BIN)/al-loop phase configs/cafeni-small.yaml
	$(BIN)/python benchmarks/phase_dft_check.py configs/cafeni-small.yaml

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check al_loop calculators database launchers tests benchmarks

bench: setup
	$(BIN)/python benchmarks/db_bench.py
	$(BIN)/python benchmarks/dispatch_bench.py

clean:
	rm -rf al-loop-runs configs/al-loop-runs
