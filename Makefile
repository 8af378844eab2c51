# One command to run the app, one to test it. Both create the virtualenv when missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/dev.txt
# How `make lock` resolves: for the machines this runs on (Linux, CPython 3.11).
RESOLVE := --generate-hashes --python-version 3.11 --python-platform linux --quiet
# What mypy checks (configured in pyproject.toml); packages join here once they pass.
TYPED := accounts audit authentication cases clinic inference reviews registry leukweb runtime training benchmarks tests manage.py

.PHONY: setup run test test-fast test-embedded test-browser test-faults test-api-fuzz lint lock \
	clean-var

# Exactly the locked versions, each checked against its hash; the project itself is not
# installed: it runs from this checkout.
$(STAMP): $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK)
	touch $(STAMP)

setup: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py export_onnx
	$(BIN)/python manage.py ensure_demo_users
	$(BIN)/python manage.py ensure_demo_model

run: setup
	$(BIN)/python manage.py serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(TYPED)

test: lint
	$(BIN)/pytest

# The edit-test loop: everything but the tests marked slow (real training runs, big models).
test-fast: lint
	$(BIN)/pytest -m "not slow and not browser and not faults and not api_fuzz"

# The embedded defaults (SQLite, filesystem broker), whatever the environment says.
test-embedded: $(STAMP)
	env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL -u CELERY_RESULT_BACKEND \
		$(BIN)/pytest -m embedded

# Each role's journey in Debian's Chromium against a real web server and worker that the
# suite starts on a fresh embedded install (apt-get install chromium first).
test-browser: $(STAMP)
	env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL -u CELERY_RESULT_BACKEND \
		$(BIN)/pytest -m browser tests/browser

# Schemathesis against the OpenAPI schema of a real server (gunicorn, embedded defaults) with
# a clinician's API token: no server error, no response outside the schema. A few minutes.
test-api-fuzz: $(STAMP)
	env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL -u CELERY_RESULT_BACKEND \
		$(BIN)/pytest -m api_fuzz tests/api_fuzz

# Real faults against a private production-shaped stack (PostgreSQL cluster, Redis, gunicorn,
# two analysis workers, a heatmap worker, the sweeper) that the suite starts on free ports:
# needs root (a tmpfs, the postgres user) and the PostgreSQL and Redis server binaries.
# Bounded to 10 minutes.
test-faults: $(STAMP)
	timeout 600 $(BIN)/pytest -m faults tests/faults

# After changing a dependency in pyproject.toml: pin everything again, with hashes.
# dev.txt holds every role's extra and the dev tools; web.txt, worker.txt and heatmaps.txt
# (one Docker image each) hold the same versions, each only what its role needs.
ROLES := web worker heatmaps
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --all-extras $(RESOLVE) -o requirements/dev.txt
	for role in $(ROLES); do \
		$(BIN)/uv pip compile pyproject.toml --extra $$role $(RESOLVE) \
			-c requirements/dev.txt -o requirements/$$role.txt || exit 1; \
	done

clean-var:
	rm -rf var
