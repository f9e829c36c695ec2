# syntax=docker/dockerfile:1
# The tvm/pyrovm image: TVM's gateway and worker, one image, the role by command.
#
#   docker build -t tvm/pyrovm:latest .
#   docker run -d --privileged -p 8080:8080 -v tvm-data:/var/lib/tvm tvm/pyrovm:latest
#
# Roles (the first argument): all-in-one (default), gateway, worker; anything else
# is run as a command (e.g. `tvm images list`). docs/deploy.md has the details.
#
# Build arguments:
#   BASE_IMAGE   the Debian bookworm base (default debian:bookworm-slim; hosts that
#                cannot pull use `make docker-base`, an equivalent made with mmdebstrap)
#   TVM_VERSION  the version in the OCI labels (make docker-image passes tvm.__version__)
#   BAKE_IMAGES  language images built into the image itself, for air-gapped hosts:
#                empty (default: built into the /var/lib/tvm volume on first start),
#                "default" (every image a language uses) or language names
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ARG TVM_VERSION=0.1.0
LABEL org.opencontainers.image.title="tvm/pyrovm" \
      org.opencontainers.image.description="TVM: untrusted code in throw-away sandboxes behind Piston, Judge0 and E2B compatible APIs" \
      org.opencontainers.image.version="${TVM_VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# Debian packages: the sandbox drivers (bubblewrap, runsc, qemu), the image builder
# (mmdebstrap), an init (tini), Python. One layer, changed only with this list.
RUN export DEBIAN_FRONTEND=noninteractive \
 && apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      python3 python3-venv ca-certificates curl tini util-linux \
      bubblewrap runsc mmdebstrap debian-archive-keyring \
      qemu-system-x86 e2fsprogs cpio \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*

# Python dependencies first (a layer that changes only with pyproject.toml and the
# wheels), then TVM. docker/wheels may hold them already (`make docker-wheels`):
# WHEELS_ONLY=1 then installs from there alone, for hosts without a package index.
ARG WHEELS_ONLY=
WORKDIR /opt/tvm/src
COPY docker/wheels/ /tmp/wheels/
COPY pyproject.toml ./
RUN python3 -m venv /opt/tvm/venv \
 && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
 && /opt/tvm/venv/bin/pip install -q --no-cache-dir --disable-pip-version-check \
      --find-links /tmp/wheels ${WHEELS_ONLY:+--no-index} -r /tmp/requirements.txt "setuptools>=68" \
 && rm -rf /tmp/requirements.txt /tmp/wheels
COPY README.md ./
COPY tvm ./tvm
RUN /opt/tvm/venv/bin/pip install -q --no-cache-dir --disable-pip-version-check --no-deps \
      --no-build-isolation . \
 && rm -rf build tvm.egg-info \
 && ln -s /opt/tvm/venv/bin/tvm /usr/local/bin/tvm
COPY scripts/docker-entrypoint.sh /usr/local/bin/tvm-entrypoint

# The gateway role runs as this user; the worker needs root for its sandboxes
# (namespaces, cgroups, per-sandbox uids), as docs/isolation.md explains.
RUN useradd --system --uid 10001 --home-dir /var/lib/tvm --shell /usr/sbin/nologin tvm \
 && mkdir -p /var/lib/tvm

ENV TVM_HOME=/var/lib/tvm \
    TVM_HOST=0.0.0.0 \
    TVM_PORT=8080 \
    PYTHONDONTWRITEBYTECODE=1

# A baked image's first start then checks (and finds) the same images.
ARG BAKE_IMAGES=
ENV BUILD_IMAGES=${BAKE_IMAGES:-default}
RUN if [ -n "${BAKE_IMAGES}" ]; then tvm-entrypoint build-images "${BAKE_IMAGES}"; fi

VOLUME ["/var/lib/tvm"]
EXPOSE 8080
WORKDIR /var/lib/tvm
HEALTHCHECK --interval=10s --timeout=5s --start-period=20m --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${TVM_PORT}/health" >/dev/null || exit 1
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/usr/local/bin/tvm-entrypoint"]
CMD ["all-in-one"]
