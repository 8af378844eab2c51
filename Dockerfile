# One image for web, worker and beat; docker-compose.yml picks the command.
FROM python:3.11-slim

# PYTHONPATH puts the source tree before the installed copy, so templates and static
# files are found next to the code (settings derive BASE_DIR from their own path).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PYTHONPATH=/app
WORKDIR /app

COPY pyproject.toml README.md ./
COPY leukweb leukweb
COPY accounts accounts
COPY audit audit
COPY cases cases
COPY inference inference
COPY training training
RUN pip install .

COPY . .
# The manifest storage needs the production settings; these values exist only for the build.
RUN DEBUG=False SECRET_KEY=collectstatic-only-build-time-key-0123456789 ALLOWED_HOSTS=build \
    python manage.py collectstatic --noinput

RUN useradd --create-home leukweb && mkdir -p /data/media /data/models /data/var \
    && chown -R leukweb /data
USER leukweb
EXPOSE 8000
CMD ["gunicorn", "leukweb.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
