# Multi-stage image: build a wheel with its dependencies, run as a non-root user.
# (No Docker engine runs on the development machines; this file is not built in CI.)
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY workflows ./workflows
COPY notifiers ./notifiers
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 duban
WORKDIR /app
COPY --from=build /install /usr/local
COPY alembic.ini ./
COPY alembic ./alembic
COPY service ./service
COPY workflows ./workflows
COPY notifiers ./notifiers
USER duban
ENV DUBAN_TIMEZONE=Asia/Shanghai
EXPOSE 8000
# Migrations first, then the server (API, timer sweep and dispatcher in one process).
CMD ["sh", "-c", "duban db upgrade && exec duban serve --host 0.0.0.0 --port 8000 --no-migrate"]
