# One command to run the app, one to test it. Both create the virtualenv when missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# What mypy checks (configured in pyproject.toml); packages join here once they pass.
TYPED := accounts audit cases clinic inference reviews registry leukweb tests manage.py

.PHONY: setup run test test-embedded lint clean-var

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
	$(BIN)/mypy $(TYPED)

test: lint
	$(BIN)/pytest

# The embedded defaults (SQLite, filesystem broker), whatever the environment says.
test-embedded: $(STAMP)
	env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL -u CELERY_RESULT_BACKEND \
		$(BIN)/pytest -m embedded

clean-var:
	rm -rf var
