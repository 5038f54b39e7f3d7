# Entry points for the things rrbench regenerates or measures. The test command is in README.md (.ci/run runs it).
PY ?= python

.PHONY: leaderboards
leaderboards:  ## regenerate leaderboards/ from the offline sanity runs (tables, plots; reported.json is kept)
	bash scripts/regenerate-leaderboards.sh leaderboards
