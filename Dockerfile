# The app image: slim Python, non-root.  Postgres comes from DATABASE_URL (see docker-compose.yml).
# A plain (non-editable) install: the migrations ship inside the package, so nothing else is copied.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels && useradd --system --uid 10001 --home /app profilestore
WORKDIR /app
USER profilestore

ENV PROFILESTORE_HOST=0.0.0.0 PROFILESTORE_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)" || exit 1
CMD ["profilestore", "serve"]
