"""Test settings: production-shaped, with a queue of their own and a fast hasher."""

import os

# A test run on PostgreSQL is shaped like a deployment, which must name its secret key
# and hosts. These stand in while the settings load, and are taken back out of the
# environment, so that processes the tests start see only what the tests give them.
_STAND_INS = {
    "SECRET_KEY": "test-settings-only-key-not-a-secret-0123456789",
    "ALLOWED_HOSTS": "localhost,127.0.0.1,testserver",
}
_added = {name: value for name, value in _STAND_INS.items() if name not in os.environ}
os.environ.update(_added)
try:
    from leukweb.settings import *  # noqa: F403
finally:
    for _name in _added:
        del os.environ[_name]

# The test client and the servers the tests start speak plain HTTP on loopback; HSTS and the
# rest of the HTTPS settings stay as a deployment has them (tests/platform/test_headers.py
# turns the redirect back on).
SECURE_SSL_REDIRECT = False
# Keep test messages away from a `make run` worker sharing the same broker.
CELERY_TASK_DEFAULT_QUEUE = "leukweb-test"
CELERY_SWEEP_QUEUE = "leukweb-test-sweep"
CELERY_HEATMAP_QUEUE = "leukweb-test-heatmaps"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests render pages without a collectstatic run (a deployment's manifest storage needs one).
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Throttle counters per test process, emptied before each test (tests/conftest.py).
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
