from django.apps import AppConfig
from django.conf import settings


class LeukwebConfig(AppConfig):
    name = "leukweb"
    verbose_name = "Platform"

    def ready(self) -> None:
        # Web and worker alike may be first to touch the embedded broker's folders.
        if settings.CELERY_BROKER_URL.startswith("filesystem://"):
            for name in ("queue", "control", "results"):
                (settings.CELERY_QUEUE_DIR / name).mkdir(parents=True, exist_ok=True)
