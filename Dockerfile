# One image for web, worker and beat; docker-compose.yml picks the command.
FROM python:3.11-slim

# The code runs from /app (PYTHONPATH), next to its templates and static files.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PYTHONPATH=/app
WORKDIR /app

# Dependencies first, in a layer of their own: exactly the locked versions, each checked
# against its hash. The project code is not installed: PYTHONPATH serves it.
COPY requirements/production.txt requirements/
RUN pip install --require-hashes --no-deps -r requirements/production.txt

COPY . .
# The manifest storage needs the production settings; these values exist only for the build.
RUN DEBUG=False SECRET_KEY=collectstatic-only-build-time-key-0123456789 ALLOWED_HOSTS=build \
    python manage.py collectstatic --noinput

RUN useradd --create-home leukweb && mkdir -p /data/media /data/models /data/var \
    && chown -R leukweb /data
USER leukweb
EXPOSE 8000
CMD ["gunicorn", "leukweb.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
