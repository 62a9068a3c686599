# syntax=docker/dockerfile:1
# The dashboard server in a container. From a checkout:
#   docker build -t dashboard .
#   docker run --rm -p 8888:8888 -v dashboard-data:/srv/dashboard/data dashboard
# Your own config: -v ./config.toml:/srv/dashboard/config.toml:ro. Scale-out with Redis
# and PostgreSQL: deploy/compose.yaml. README.md, "Container", says more.

ARG PYTHON=3.12-slim-bookworm

# --- build: the wheel, installed with the optional backends into a virtualenv ---------------
FROM python:${PYTHON} AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY dashboard dashboard
COPY templates templates
COPY static static
COPY migrations migrations
# Not editable: pip builds the wheel, which carries templates, static files and migrations
# inside the package, and compiles it; /src is left behind with this stage.
RUN python -m venv /opt/dashboard \
 && /opt/dashboard/bin/pip install --no-cache-dir --disable-pip-version-check "/src[redis,postgres,mqtt]"

# --- run: the virtualenv on a slim Python, as a user of its own ------------------------------
FROM python:${PYTHON}
RUN useradd --system --uid 10001 --user-group --home-dir /srv/dashboard --no-create-home \
        --shell /usr/sbin/nologin dashboard \
 && install -d -o root -g root -m 0755 /srv/dashboard \
 && install -d -o dashboard -g dashboard -m 0750 /srv/dashboard/data
COPY --from=build /opt/dashboard /opt/dashboard
# The bundled config: its database, data/dashboard.db, resolves to /srv/dashboard/data.
COPY config.toml /srv/dashboard/config.toml
ENV PATH=/opt/dashboard/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /srv/dashboard
USER dashboard
# The SQLite database (and its -wal and -shm files): keep it across containers.
VOLUME ["/srv/dashboard/data"]
EXPOSE 8888
# The server's graceful stop: streams get a jittered retry and close, tickers stop,
# pending writes finish, exit 0 within [server] grace (docker stop waits 10 s).
STOPSIGNAL SIGTERM
# Python's standard library, no curl in the image: 200 is healthy; 503 (starting,
# stopping, database away) or no answer is not, and the reason goes to the health log.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request\ntry:\n    urllib.request.urlopen('http://127.0.0.1:8888/healthz', timeout=4)\nexcept Exception as exc:\n    sys.exit(f'unhealthy: {exc}')"]
ENTRYPOINT ["dashboard"]
# 0.0.0.0: the published port reaches the server from outside the container.
CMD ["serve", "--config", "/srv/dashboard/config.toml", "--host", "0.0.0.0"]
