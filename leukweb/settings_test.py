"""Test settings: production-shaped, with a queue of their own and a fast hasher."""

from leukweb.settings import *  # noqa: F403

# Keep test messages away from a `make run` worker sharing the same broker.
CELERY_TASK_DEFAULT_QUEUE = "leukweb-test"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
