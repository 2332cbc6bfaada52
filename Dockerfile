FROM python:3.11-slim
WORKDIR /opt/hacksky-edge
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY drivers ./drivers
COPY simulators ./simulators
COPY config ./config
RUN pip install --no-cache-dir . && useradd --system hacksky-edge && mkdir -p /var/lib/hacksky-edge \
    && chown hacksky-edge /var/lib/hacksky-edge
USER hacksky-edge
ENTRYPOINT ["hacksky-edge"]
