# syntax=docker/dockerfile:1
# One image for all three services; the Kubernetes manifests pick the command:
#   python -m services.gateway | python -m services.login | python -m services.notifier
#
#   docker build -t ghcr.io/wxstream/wxstream:0.1.0 .
#
# Both stages use the same base, so the venv's interpreter symlink
# (/opt/venv/bin/python -> /usr/local/bin/python3.11) is valid in the final stage.
# The tag is pinned (never latest); for byte-for-byte rebuilds, append its digest
# (python:3.11-slim-bookworm@sha256:...) to both FROM lines.

FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Every dependency ships a manylinux wheel or is pure Python: no compiler needed.
COPY pyproject.toml constraints.txt README.md ./
COPY shared/ shared/
COPY services/ services/
COPY tools/ tools/
# A regular (non-editable) install: the app and its package data land in the venv,
# compiled to .pyc here, since the running container cannot write any.
RUN pip install -c constraints.txt .


FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

RUN groupadd --system --gid 10001 wxstream \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin wxstream

# Only the venv (which holds the installed app); no sources, pip cache or build files.
COPY --from=builder /opt/venv /opt/venv

# Nothing here is writable by the app: Kubernetes runs it with a read-only root
# filesystem, an emptyDir at /tmp and (login) the session volume.
WORKDIR /app
USER 10001:10001

# 8000: gateway HTTP (SSE, API, dashboard); 9100: ops (/metrics, /healthz, /readyz).
EXPOSE 8000 9100

CMD ["python", "-m", "services.gateway"]
