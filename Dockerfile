# syntax=docker/dockerfile:1
# stomp-gateway: a WebSocket STOMP gateway for RabbitMQ (rabbitmq_web_stomp, outside the broker).
#   docker build -t stomp-gateway .
#   docker run -p 15674:15674 -e GATEWAY_AMQP_URL=amqp://rabbit:5672/ stomp-gateway
# Settings: env GATEWAY_* > /etc/stomp-gateway/gateway.toml (GATEWAY_CONFIG) > defaults.

# ---- build: a venv with the package and its `fast` extra (uvloop) ----------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN /opt/venv/bin/pip install '.[fast]'

# ---- runtime ---------------------------------------------------------------------
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_CONFIG=/etc/stomp-gateway/gateway.toml
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /opt/venv /opt/venv
# The demo page (static/: index.html, legacy.html, vendored stomp.js bundles), served at
# http://HOST:15674/ beside ws://HOST:15674/ws (an installed wheel has no static/ of its own).
COPY static /usr/share/stomp-gateway/static
ENV GATEWAY_STATIC_DIR=/usr/share/stomp-gateway/static
# Default config: every setting at its default (host 0.0.0.0); mount your own over it.
# The healthcheck follows GATEWAY_PORT when the port is moved through the environment.
COPY config/gateway.example.toml /etc/stomp-gateway/gateway.toml
USER gateway
EXPOSE 15674
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GATEWAY_PORT', '15674'), timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["stomp-gateway"]
