"""Test settings: production-shaped, with a queue of their own and a fast hasher."""

import os

# A test run on PostgreSQL is shaped like a deployment, which must name its secret key
# and hosts; these exist only for tests.
os.environ.setdefault("SECRET_KEY", "test-settings-only-key-not-a-secret-0123456789")
os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")

from leukweb.settings import *  # noqa: F403

# Keep test messages away from a `make run` worker sharing the same broker.
CELERY_TASK_DEFAULT_QUEUE = "leukweb-test"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
