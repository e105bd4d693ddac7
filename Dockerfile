# The app image: slim Python, non-root.  Postgres comes from DATABASE_URL (see docker-compose.yml).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY src ./src
COPY migrations ./migrations
# Editable install keeps the src/ layout, so `profilestore migrate` finds alembic.ini and migrations/.
RUN pip install -e . && useradd --system --uid 10001 --home /app profilestore
USER profilestore

ENV PROFILESTORE_HOST=0.0.0.0 PROFILESTORE_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)" || exit 1
CMD ["profilestore", "serve"]
