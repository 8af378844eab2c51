# One command to run the app, one to test it. Both create the virtualenv when missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast test-embedded lint clean-var

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_demo_users
	$(BIN)/python manage.py ensure_demo_model

run: setup
	$(BIN)/python manage.py serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest

# The edit-test loop: everything but the tests marked slow (real training runs, big models).
test-fast: lint
	$(BIN)/pytest -m "not slow"

# The embedded defaults (SQLite, filesystem broker), whatever the environment says.
test-embedded: $(STAMP)
	env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL -u CELERY_RESULT_BACKEND \
		$(BIN)/pytest -m embedded

clean-var:
	rm -rf var
