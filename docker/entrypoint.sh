#!/bin/sh
# Entrypoint of the iotmock image: turns IOTMOCK_* environment variables into `iotmock serve`
# flags, then replaces itself with iotmock, which replaces itself with mosquitto (one process,
# PID 1, stopped cleanly by `docker stop`).
#
#   docker run iotmock                      -> iotmock serve with the flags below
#   docker run iotmock --token-ttl 60       -> the same, plus these flags
#   docker run iotmock bash                 -> any other command runs as given
set -eu

case "${1:-}" in
  "" | -*) ;;
  serve) shift ;;
  *) exec "$@" ;;
esac

set -- serve \
  --state-dir "${IOTMOCK_STATE_DIR:-/var/lib/iotmock}" \
  --host "${IOTMOCK_HOST:-localhost}" \
  --bind "${IOTMOCK_BIND:-0.0.0.0}" \
  --mqtt-port "${IOTMOCK_MQTT_PORT:-8883}" \
  --http-port "${IOTMOCK_HTTP_PORT:-4580}" \
  --region "${IOTMOCK_REGION:-us-east-1}" \
  --account-id "${IOTMOCK_ACCOUNT_ID:-123456789012}" \
  "$@"
if [ -n "${IOTMOCK_LAMBDA_ENDPOINT:-}" ]; then
  set -- "$@" --lambda-endpoint "$IOTMOCK_LAMBDA_ENDPOINT"
fi
if [ -n "${IOTMOCK_TEMPLATES_DIR:-}" ]; then
  set -- "$@" --templates-dir "$IOTMOCK_TEMPLATES_DIR"
fi
if [ -n "${IOTMOCK_TOKEN_TTL:-}" ]; then
  set -- "$@" --token-ttl "$IOTMOCK_TOKEN_TTL"
fi
if [ -n "${IOTMOCK_KEY_POOL:-}" ]; then
  set -- "$@" --key-pool "$IOTMOCK_KEY_POOL"
fi
case "${IOTMOCK_IN_MEMORY:-}" in
  1 | true | yes | on) set -- "$@" --in-memory ;;
esac

state=${IOTMOCK_STATE_DIR:-/var/lib/iotmock}
if [ -e "$state" ] && ! [ -w "$state" ]; then
  echo "iotmock: the state directory $state is not writable by uid $(id -u);" \
    "a host directory mounted there must belong to 10001:10001 (or run with --user)" >&2
  exit 1
fi

exec /usr/bin/iotmock "$@"
