# Entry points for the things rrbench regenerates or measures. The test command is in README.md (.ci/run runs it).
PY ?= python

.PHONY: leaderboards
leaderboards:  ## regenerate leaderboards/ from the offline sanity runs (tables, plots; published numbers from the package)
	bash scripts/regenerate-leaderboards.sh leaderboards

.PHONY: bench
bench:  ## every performance figure in one table (bench/suite.py; about 10 minutes on 2 cores)
	$(PY) bench/suite.py

.PHONY: bench-quick
bench-quick:  ## the same at smaller sizes: a smoke run
	$(PY) bench/suite.py --quick

.PHONY: bench-generation
bench-generation:  ## generation loop vs raw diffusers, peak RSS, Ray 2 actors vs 1 (bench/generation.py; about 5 min)
	$(PY) bench/generation.py

.PHONY: bench-judging
bench-judging:  ## judging UniGenBench++ (2,400 images) vs raw load generators, peak RSS (bench/generation_judging.py; about 6 min)
	$(PY) bench/generation_judging.py

.PHONY: bench-refine
bench-refine:  ## refine: overlap of critique and generation vs the stages one after another (bench/refine.py; about 2 min)
	$(PY) bench/refine.py

.PHONY: bench-parrot
bench-parrot:  ## PARROT: anchor vs a raw load generator, rrbench-train sft step vs bare TRL (bench/parrot.py; about 3 min)
	$(PY) bench/parrot.py

.PHONY: mutation
mutation:  ## mutation testing of the core modules against their fast tests (docs/mutation.md; ARGS="--module store")
	$(PY) scripts/mutation.py $(ARGS)

.PHONY: bench-rl
bench-rl:  ## diffusion RL: reward hidden behind sampling (critic of fixed latency vs instant), trainer vs bare diffusers (bench/rl.py; about 70 s)
	$(PY) bench/rl.py
