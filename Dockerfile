# Multi-stage image: build a wheel with its dependencies, run as a non-root user.
# (No Docker engine runs on the development machines; this file is not built in CI. What it
# relies on is: the wheel migrates on its own, tests/docs/test_packaging.py.)
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY workflows ./workflows
COPY notifiers ./notifiers
COPY alembic ./alembic
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 duban \
 && mkdir -p /app/var && chown -R duban:duban /app
COPY --from=build /install /usr/local
WORKDIR /app
USER duban
ENV DUBAN_TIMEZONE=Asia/Shanghai
# The default SQLite database lives here; mount a volume (or set DUBAN_DATABASE_URL to
# PostgreSQL) so that it outlives the container.
VOLUME ["/app/var"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"
# Migrations first, then the server (API, timer sweep and dispatcher in one process).
CMD ["sh", "-c", "duban db upgrade && exec duban serve --host 0.0.0.0 --port 8000 --no-migrate"]
