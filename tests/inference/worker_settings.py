"""Settings for a test worker on Redis that re-delivers an unacknowledged task within
seconds instead of the production hour, so a killed worker's task comes back in a test."""

from leukweb.settings_test import *  # noqa: F403

CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,  # noqa: F405
    "visibility_timeout": 3,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
