#!/usr/bin/env bash
# The container path, tested with a real engine (called by .ci/run; `make test-containers`).
#
# 1. Debian's docker.io and docker-compose; a dockerd of our own (no bridge, no
#    iptables: containers use host networking), unless one already answers.
# 2. The images: a Debian base made locally (no registry), tvm/pyrovm, tvm/postgres.
#    Docker's layer cache keeps reruns short.
# 3. tvm/pyrovm all-in-one with the host's image store as its images volume (the
#    entry point's first-start build finds every image there: nothing is built
#    twice): a Piston and a Judge0 request.
# 4. docker-compose.hostnet.yml: PostgreSQL, two gateway replicas, two workers. The
#    same requests through each gateway; then async submissions under load while a
#    worker container and a gateway replica are killed: every accepted one completes.
# 5. Everything torn down (and the daemon stopped, if this script started it).
#
# Needs root. Ports: 18080-18081 (gateways), 18101-18102 (workers), 15432
# (PostgreSQL), 18090 (all-in-one), all on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
step() { echo; echo "== containers: $* ($(( $(date +%s) - started )) s)"; }
PY=${PY:-.venv/bin/python}
STATE=${TVM_CI_DOCKER_STATE:-/var/lib/tvm-ci-docker}
PROJECT=tvmci
IMAGES_DIR=${TVM_IMAGES_DIR:-/var/lib/tvm/images}
AIO=tvmci-all-in-one
AIO_PORT=18090
COMPOSE=(docker-compose -p "$PROJECT" -f docker-compose.hostnet.yml)
export TVM_POSTGRES_IMAGE=tvm/postgres:15 TVM_IMAGES_DIR="$IMAGES_DIR" TVM_BUILD_IMAGES=default
# What the privilege block of docker-compose.hostnet.yml gives the workers.
PRIVILEGE=(--cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined
           -v /sys/fs/cgroup:/sys/fs/cgroup)

step "packages"
sh scripts/install-deps.sh docker.io docker-compose
DOCKER_BIN=/usr/bin/docker   # Debian's client, whatever else is first on PATH
docker() { "$DOCKER_BIN" "$@"; }

step "docker daemon"
own_daemon=""
if ! docker info >/dev/null 2>&1; then
    mkdir -p "$STATE"
    export DOCKER_HOST="unix://$STATE/docker.sock"
    if ! docker info >/dev/null 2>&1; then
        /usr/sbin/dockerd --bridge=none --iptables=false --ip-masq=false \
            --data-root "$STATE/data" --exec-root "$STATE/exec" --pidfile "$STATE/dockerd.pid" \
            -H "$DOCKER_HOST" >"$STATE/dockerd.log" 2>&1 &
        own_daemon=$!
        for _ in $(seq 1 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
        docker info >/dev/null || { tail -20 "$STATE/dockerd.log"; exit 1; }
    fi
fi
echo "docker: $(docker version --format '{{.Server.Version}}') at ${DOCKER_HOST:-the default socket}"

teardown() {
    set +e
    "${COMPOSE[@]}" logs --no-color --tail 30 >"$STATE/compose.log" 2>&1
    "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1
    docker rm -f "$AIO" >/dev/null 2>&1
    if [ -n "$own_daemon" ]; then
        kill "$own_daemon"; wait "$own_daemon"
    fi
}
trap teardown EXIT

wait_healthy() {  # URL SECONDS
    for _ in $(seq 1 "$2"); do
        curl -fsS -o /dev/null "$1/health" 2>/dev/null && return 0
        sleep 1
    done
    echo "not healthy: $1" >&2
    return 1
}

step "images (local base, tvm/pyrovm, tvm/postgres)"
make -s docker-image-local docker-postgres DOCKER="$DOCKER_BIN" >/dev/null
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^tvm/' || true

step "one container, all-in-one, the host's image store as its volume"
docker rm -f "$AIO" >/dev/null 2>&1 || true
docker run -d --name "$AIO" --network host "${PRIVILEGE[@]}" \
    -v "$IMAGES_DIR:/var/lib/tvm/images" \
    -e TVM_HOST=127.0.0.1 -e TVM_PORT=$AIO_PORT \
    tvm/pyrovm:latest >/dev/null
if ! wait_healthy "http://127.0.0.1:$AIO_PORT" 900; then docker logs "$AIO" | tail -40; exit 1; fi
if docker logs "$AIO" 2>&1 | grep -q "mmdebstrap"; then
    echo "the container built a language image the host store already had" >&2
    exit 1
fi
"$PY" scripts/container_checks.py smoke "http://127.0.0.1:$AIO_PORT"
docker rm -f "$AIO" >/dev/null

step "compose: PostgreSQL, two gateways, two workers"
"${COMPOSE[@]}" up -d
for url in http://127.0.0.1:18101 http://127.0.0.1:18102 http://127.0.0.1:18080 http://127.0.0.1:18081; do
    if ! wait_healthy "$url" 900; then "${COMPOSE[@]}" logs --tail 40; exit 1; fi
done
"$PY" scripts/container_checks.py smoke http://127.0.0.1:18080
"$PY" scripts/container_checks.py smoke http://127.0.0.1:18081

step "compose: a worker and a gateway killed under load"
"$PY" scripts/container_checks.py load \
    --gateway http://127.0.0.1:18080 --gateway http://127.0.0.1:18081 \
    --kill "$DOCKER_BIN kill ${PROJECT}_worker-1_1" \
    --kill "$DOCKER_BIN kill ${PROJECT}_gateway-a_1"

step "done"
