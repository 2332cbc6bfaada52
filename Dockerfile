# The agent and the simulators in one image: `docker build -t hacksky-edge .`
# Dependencies come pinned and hashed from requirements.lock; the package itself goes in without
# them. Everything it needs at run time is inside the package (builtin:ctown's data included).
FROM python:3.11-slim AS build
RUN python -m venv /opt/hacksky-edge
COPY requirements.lock /tmp/
RUN /opt/hacksky-edge/bin/pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY drivers ./drivers
COPY simulators ./simulators
RUN /opt/hacksky-edge/bin/pip install --no-cache-dir --no-deps .

FROM python:3.11-slim
# a fixed uid, so volumes keep their owner across rebuilds (deploy/compose/make-password.sh)
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/hacksky-edge --shell /usr/sbin/nologin hacksky-edge \
    && install -d -m 0750 -o hacksky-edge -g hacksky-edge /var/lib/hacksky-edge
COPY --from=build /opt/hacksky-edge /opt/hacksky-edge
COPY config /opt/hacksky-edge/config
ENV PATH=/opt/hacksky-edge/bin:$PATH
WORKDIR /var/lib/hacksky-edge
USER hacksky-edge
# /health is served on monitoring.listen:port, by default 127.0.0.1:9108: inside the container,
# where this check runs. A map that moves it sets HACKSKY_HEALTH_URL. 503 (not ready) fails too.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('HACKSKY_HEALTH_URL', 'http://127.0.0.1:9108/health'), timeout=4)"]
ENTRYPOINT ["hacksky-edge"]
