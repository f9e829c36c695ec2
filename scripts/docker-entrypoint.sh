#!/bin/sh
# Entry point of the tvm/pyrovm image (run under tini). The first argument is the role:
#
#   all-in-one [ARGS]   gateway + sandboxes in one container (the default)
#   gateway [ARGS]      only the gateway, as the unprivileged user tvm; workers from
#                       TVM_WORKERS or TVM_WORKERS_DNS, the database from TVM_DATABASE_URL
#   worker [ARGS]       only a worker (needs the privileges in docs/deploy.md)
#   build-images [LANGS]  build language images into $TVM_HOME and exit
#   anything else       run as a command (e.g. `tvm images list`, `bash`)
#
# ARGS go to `tvm start` (e.g. --port 8081 --driver gvisor). all-in-one and worker
# first build the language images missing from $TVM_HOME/images (progress in the
# log; a no-op once they are there): BUILD_IMAGES=default (every image a language
# uses), a list of languages (e.g. "python c bash"), or none.
set -eu

build_images() {
    wanted=${1:-default}
    case "$wanted" in
        none) return 0 ;;
        default) set -- ;;
        *) set -- $wanted ;;
    esac
    echo "tvm-entrypoint: building the language images missing from $TVM_HOME/images" >&2
    tvm images build "$@"
}

role=${1:-all-in-one}
[ $# -gt 0 ] && shift
case "$role" in
    all-in-one | all)
        build_images "${BUILD_IMAGES:-default}"
        exec tvm start --role all "$@"
        ;;
    worker)
        build_images "${BUILD_IMAGES:-default}"
        exec tvm start --role worker "$@"
        ;;
    gateway)
        if [ "$(id -u)" = 0 ]; then
            mkdir -p "$TVM_HOME/logs" "$TVM_HOME/run"
            chown tvm:tvm "$TVM_HOME" "$TVM_HOME/logs" "$TVM_HOME/run"
            HOME=$TVM_HOME exec setpriv --reuid tvm --regid tvm --init-groups --inh-caps=-all \
                --bounding-set=-all --no-new-privs tvm start --role gateway "$@"
        fi
        exec tvm start --role gateway "$@"
        ;;
    build-images)
        build_images "${*:-default}"
        ;;
    *)
        exec "$role" "$@"
        ;;
esac
