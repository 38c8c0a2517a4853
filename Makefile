# Two commands for a new user: `make demo` (analyze a simulated incident) and `make test`.
# Each installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo serve test test-unit bench clean kafka-start kafka-stop

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/rca demo

serve: $(STAMP)
	$(BIN)/rca serve

# The whole suite: unit, Serve, integration (embedded PostgreSQL, a real Kafka broker) and the
# evaluations on ../shared/datasets when present. Starts and stops the broker itself.
test: $(STAMP)
	-scripts/install-prometheus --compose
	-scripts/install-chromium
	scripts/kafka start
	@status=0; PATH="$(CURDIR)/$(BIN):$$PATH" \
		$(BIN)/pytest -p no:cacheprovider -ra --durations=15 $(PYTEST_ARGS) || status=$$?; \
		scripts/kafka stop; exit $$status

# Unit tests only: no Ray, no services; seconds.
test-unit: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider tests/unit

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[test,bench]"
	$(BIN)/python bench/throughput.py --json

clean:
	rm -rf $(VENV) .rca .cache .pytest_cache .hypothesis
