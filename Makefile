# caveat — the two commands a newcomer needs:
#   make demo   set up, simulate the demo study, run the whole pipeline, print the report's path
#   make test   set up and run the test suite (what CI runs)
SHELL := /bin/bash
PY    := .venv/bin/python
DEMO  ?= demo
THREADS ?= 2

.PHONY: setup demo demo-sc test test-slow test-demo bench bench-scaling clean

setup:
	scripts/setup.sh

demo: setup
	@# the simulation is deterministic: reuse it when complete (its summary is written last)
	[[ -f $(DEMO)/simulate.summary.json ]] || $(PY) -m caveat.cli simulate --preset demo --seed 1 --out $(DEMO) --threads $(THREADS)
	$(PY) -m caveat.cli run --params $(DEMO)/params.yaml --outdir $(DEMO)/results --resume --threads $(THREADS)
	@if [[ -f $(DEMO)/results/report.html ]]; then echo "report: $$(realpath $(DEMO)/results/report.html)"; \
	 else echo "outputs: $$(realpath $(DEMO)/results)"; fi

# the demo study as two 10x-like libraries pooling its donors (docs/single_cell.md)
demo-sc: setup
	[[ -f $(DEMO)-sc/simulate.summary.json ]] || $(PY) -m caveat.cli simulate --preset demo-sc --seed 1 --out $(DEMO)-sc --threads $(THREADS)
	$(PY) -m caveat.cli run --params $(DEMO)-sc/params.yaml --outdir $(DEMO)-sc/results --resume --threads $(THREADS)
	@echo "report: $$(realpath $(DEMO)-sc/results/report.html)"

test:
	scripts/setup.sh --test
	$(PY) -m pytest -q

test-slow:
	scripts/setup.sh --test
	$(PY) -m pytest -q -m slow

test-demo:
	scripts/setup.sh --test
	CAVEAT_DEMO_DIR=$${CAVEAT_DEMO_DIR:-} $(PY) -m pytest -q -m demo

bench: setup
	for b in $(filter-out benchmarks/bench_scaling.py,$(wildcard benchmarks/bench_*.py)); do echo "== $$b"; $(PY) $$b || exit 1; done

# hours: simulates tiny, demo and large (~10x the demo) and runs every step at each (docs/scaling.md)
bench-scaling: setup
	$(PY) benchmarks/bench_scaling.py --workdir scaling --presets $${PRESETS:-tiny,demo,large} --config demo --markdown scaling/table.md
	@echo "table: scaling/table.md (paste it under 'Table' in docs/scaling.md and update 'This run')"

clean:
	rm -rf $(DEMO) .pytest_cache
