# The two commands of the README: `make demo` (set up, run the demo campaign) and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo demo-emt cafeni-small test lint bench clean

setup:
	bash scripts/setup.sh

# No foundation model can be downloaded here: the demo pre-trains one offline from CHGNet (its
# weights ship in its wheel; built once, kept while its recipe holds), then fine-tunes it on
# labels of another model at another level of theory (CHGNet r2SCAN): configs/demo.yaml.
FOUNDATION := configs/al-loop-runs/foundation-cafeni-chgnet.model

demo: setup
	$(BIN)/al-loop foundation $(FOUNDATION) --elements Ca,Fe,Ni --source chgnet --preset pbe --pmax 25 --structures 400 --epochs 60
	$(BIN)/al-loop run configs/demo.yaml
	$(BIN)/al-loop distil configs/demo.yaml --allow-unconverged
	$(BIN)/al-loop phase configs/demo.yaml --check oracle
	$(BIN)/al-loop phase configs/demo.yaml --model teacher --check oracle
	$(BIN)/al-loop db query configs/demo.yaml --limit 10

# The fast test configuration: Cu-Ni-Al labelled by EMT, from a foundation pre-trained on EMT.
demo-emt: setup
	$(BIN)/al-loop foundation configs/al-loop-runs/standin-cu-ni-al.model --elements Cu,Ni,Al --source emt
	$(BIN)/al-loop run configs/demo-emt.yaml

# Ca-Fe-Ni with real pw.x on small cells, end to end to the phase map and the DFT check
# (about 80 min on 2 shared cores; docs/tutorial-cafeni.md, docs/validation.md). Not a CI test.
cafeni-small: setup
	$(BIN)/al-loop setup pseudos configs/al-loop-runs/pseudos-fast --family fast
	$(BIN)/al-loop foundation configs/al-loop-runs/foundation-cafeni-chgnet.model \
		--elements Ca,Fe,Ni --source chgnet --preset pbe --pmax 25 --structures 400 --epochs 60
	$(BIN)/al-loop run configs/cafeni-small.yaml
	$(BIN)/al-loop distil configs/cafeni-small.yaml --allow-unconverged
	$(BIN)/al-loop phase configs/cafeni-small.yaml
	$(BIN)/python benchmarks/phase_dft_check.py configs/cafeni-small.yaml

# Two pytest-xdist workers: the suite is mostly one process waiting on another (rockets, pw.x,
# SLURM jobs), so a second worker uses the second core (tests/conftest.py groups the files).
TEST_WORKERS ?= 2

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadscope --durations=20

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check al_loop calculators database launchers tests benchmarks

bench: setup
	$(BIN)/python benchmarks/db_bench.py
	$(BIN)/python benchmarks/dispatch_bench.py

clean:
	rm -rf al-loop-runs configs/al-loop-runs
