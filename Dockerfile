# One Dockerfile, an image per role; docker-compose.yml builds each with its `target`:
#   web       gunicorn + WhiteNoise; verifies uploaded models with ONNX Runtime; no TensorFlow
#   worker    the analysis workers (and beat): ONNX Runtime, no TensorFlow
#   heatmaps  Grad-CAM on the heatmap queue, model import and training: TensorFlow
FROM python:3.11-slim AS base

# The code runs from /app (PYTHONPATH), next to its templates and static files.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PYTHONPATH=/app
WORKDIR /app
RUN useradd --create-home leukweb && mkdir -p /data/media /data/models /data/var \
    && chown -R leukweb /data

# Each role: its dependencies first, in a layer of their own (exactly the locked versions,
# each checked against its hash; the project code is not installed: PYTHONPATH serves
# it), then the code.
FROM base AS web
COPY requirements/web.txt requirements/
RUN pip install --require-hashes --no-deps -r requirements/web.txt
COPY . .
# The manifest storage needs the production settings; these values exist only for the build.
RUN DEBUG=False SECRET_KEY=collectstatic-only-build-time-key-0123456789 ALLOWED_HOSTS=build \
    python manage.py collectstatic --noinput
USER leukweb
EXPOSE 8000
CMD ["gunicorn", "leukweb.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]

FROM base AS worker
COPY requirements/worker.txt requirements/
RUN pip install --require-hashes --no-deps -r requirements/worker.txt
COPY . .
USER leukweb
CMD ["celery", "-A", "leukweb", "worker", "--queues=leukweb", "--loglevel=INFO", "--concurrency=1"]

FROM base AS heatmaps
COPY requirements/heatmaps.txt requirements/
RUN pip install --require-hashes --no-deps -r requirements/heatmaps.txt
COPY . .
USER leukweb
CMD ["celery", "-A", "leukweb", "worker", "--queues=heatmaps", "--loglevel=INFO", "--concurrency=1"]
