from celery import shared_task

from authentication import services


@shared_task(name="authentication.tokens_expire")
def tokens_expire() -> int:
    """Hourly (beat): delete and audit the API tokens that expired unused."""
    return services.tokens_expire()
