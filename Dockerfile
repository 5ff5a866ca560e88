# stolentee API service. Build: docker build -t stolentee .  Run: docker run -p 8000:8000 stolentee
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    OPENBLAS_NUM_THREADS=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STOLENTEE_ENV=production \
    STOLENTEE_HOST=0.0.0.0 \
    STOLENTEE_DATA_DIR=/data \
    STOLENTEE_MODELS_DIR=/opt/stolentee/models \
    PORT=8000

RUN useradd --create-home --uid 10001 stolentee \
    && mkdir -p /data && chown stolentee:stolentee /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . \
    && stolentee models install \
    && chmod -R a+rX /opt/stolentee

USER stolentee
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"8000\")}/health', timeout=4)" || exit 1

# The API (default). The same image runs the other services with another command:
#   stolentee worker --concurrency N    design jobs (with REDIS_URL and DATABASE_URL)
#   stolentee removal-service           the standalone removal service (REMBG_ENDPOINT)
CMD ["stolentee", "serve"]
