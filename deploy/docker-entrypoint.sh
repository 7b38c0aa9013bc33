#!/bin/sh
# The entrypoint of the tolk GPU image (Dockerfile.gpu): maps TOLK_* environment variables
# to `tolk serve` flags, refuses to listen on a network address without API keys, and execs
# the server (so that it gets the signals: SIGTERM drains in-flight requests).
#
#   docker run ... tolk:gpu                      serve, configured by the environment
#   docker run ... tolk:gpu --max-num-seqs 32    serve, extra flags appended
#   docker run ... tolk:gpu tolk info --json     any other command runs as given
#
# Environment (every one optional unless said otherwise):
#   TOLK_MODEL        model directory (mounted read-only), or `demo`   [/models/model]
#   TOLK_HOST         [0.0.0.0]              TOLK_PORT         [8000]
#   TOLK_API_KEYS     comma-separated API keys (required on a non-loopback host, unless
#   TOLK_API_KEYS_FILE  a file holding them, e.g. a Docker/Kubernetes secret, or
#   TOLK_KEY_FILE     an existing `tolk keys` store, or TOLK_INSECURE_NO_AUTH=1)
#   TOLK_PROFILE, TOLK_MAX_NUM_SEQS, TOLK_MAX_MODEL_LEN, TOLK_GPU_MEMORY_UTILIZATION,
#   TOLK_DTYPE, TOLK_TENSOR_PARALLEL_SIZE, TOLK_DATA_PARALLEL_SIZE, TOLK_LOAD_FORMAT,
#   TOLK_ENFORCE_EAGER=1, TOLK_DRAIN_TIMEOUT, TOLK_LOG_LEVEL, TOLK_SSL_CERTFILE,
#   TOLK_SSL_KEYFILE
# API keys never go on the command line (it is visible to every process on the host):
# `tolk serve` reads TOLK_API_KEYS from its environment.
set -eu

die() {
    echo "docker-entrypoint: $*" >&2
    exit 2
}

if [ "$#" -gt 0 ]; then
    case "$1" in
        -*) ;;                                   # flags for `tolk serve`
        serve) shift ;;                          # `serve [flags]`
        *) exec "$@" ;;                          # another command: run it as given
    esac
fi

: "${TOLK_HOST:=0.0.0.0}"
: "${TOLK_PORT:=8000}"
: "${TOLK_MODEL:=/models/model}"

if [ -n "${TOLK_API_KEYS_FILE:-}" ]; then
    [ -r "$TOLK_API_KEYS_FILE" ] || die "TOLK_API_KEYS_FILE=$TOLK_API_KEYS_FILE is not readable"
    TOLK_API_KEYS=$(tr -s ' \r\n\t' ',,,,' <"$TOLK_API_KEYS_FILE" | sed 's/^,*//; s/,*$//')
    export TOLK_API_KEYS
fi

case "$TOLK_HOST" in
    127.*|localhost|::1) loopback=1 ;;
    *) loopback=0 ;;
esac
insecure=0
case "${TOLK_INSECURE_NO_AUTH:-}" in
    1|true|TRUE|True|yes) insecure=1 ;;
    ''|0|false|FALSE|False|no) ;;
    *) die "TOLK_INSECURE_NO_AUTH must be 1 or 0, not '${TOLK_INSECURE_NO_AUTH}'" ;;
esac
if [ "$loopback" = 0 ] && [ -z "${TOLK_API_KEYS:-}" ] && [ "$insecure" = 0 ]; then
    if [ -z "${TOLK_KEY_FILE:-}" ] || [ ! -s "$TOLK_KEY_FILE" ]; then
        die "refusing to serve on $TOLK_HOST without API keys: set TOLK_API_KEYS (or" \
            "TOLK_API_KEYS_FILE, or TOLK_KEY_FILE to a 'tolk keys' store), or set" \
            "TOLK_INSECURE_NO_AUTH=1 to serve without authentication"
    fi
fi

if [ "$TOLK_MODEL" != demo ] && [ ! -d "$TOLK_MODEL" ]; then
    die "TOLK_MODEL=$TOLK_MODEL is not a directory: mount the model read-only, e.g." \
        "-v /srv/models/my-model:/models/model:ro (nothing is downloaded at run time)"
fi

# The environment's flags first, then the user's (argparse: the last one wins): append the
# environment's flags after the user's, then rotate the user's to the end.
n=$#
set -- "$@" --host "$TOLK_HOST" --port "$TOLK_PORT" --model "$TOLK_MODEL"
for pair in TOLK_PROFILE:--profile TOLK_MAX_NUM_SEQS:--max-num-seqs \
            TOLK_MAX_MODEL_LEN:--max-model-len \
            TOLK_GPU_MEMORY_UTILIZATION:--gpu-memory-utilization TOLK_DTYPE:--dtype \
            TOLK_TENSOR_PARALLEL_SIZE:--tensor-parallel-size \
            TOLK_DATA_PARALLEL_SIZE:--data-parallel-size TOLK_LOAD_FORMAT:--load-format \
            TOLK_DRAIN_TIMEOUT:--drain-timeout TOLK_LOG_LEVEL:--log-level \
            TOLK_SSL_CERTFILE:--ssl-certfile TOLK_SSL_KEYFILE:--ssl-keyfile; do
    var=${pair%%:*}
    eval "value=\${$var:-}"   # var is one of the fixed names above
    if [ -n "$value" ]; then
        set -- "$@" "${pair#*:}" "$value"
    fi
done
case "${TOLK_ENFORCE_EAGER:-}" in
    1|true|TRUE|True|yes) set -- "$@" --enforce-eager ;;
esac
if [ "$insecure" = 1 ]; then
    set -- "$@" --insecure-no-auth
fi
i=0
while [ "$i" -lt "$n" ]; do
    set -- "$@" "$1"
    shift
    i=$((i + 1))
done
set -- serve "$@"

echo "docker-entrypoint: tolk $*" >&2
exec tolk "$@"
