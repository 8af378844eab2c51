import os
import socket

from celery import shared_task


@shared_task(name="leukweb.ping")
def ping() -> dict:
    """Answer with who ran it: proves a worker consumes the queue and results come back."""
    return {"hostname": socket.gethostname(), "pid": os.getpid()}
