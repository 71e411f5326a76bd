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
# One variable per `iotmock serve` flag that takes a value; unset or empty: the flag's default.
for pair in LAMBDA_ENDPOINT:--lambda-endpoint TEMPLATES_DIR:--templates-dir \
  TOKEN_TTL:--token-ttl KEY_POOL:--key-pool ALPN_PORT:--alpn-port \
  MAX_KEEPALIVE:--max-keepalive WITHOUT:--without QOS0_REFUSAL:--qos0-refusal \
  NEGATED_ABSENT:--negated-absent JITP_FIRST_CONNECT:--jitp-first-connect; do
  eval "v=\${IOTMOCK_${pair%%:*}:-}"
  if [ -n "$v" ]; then set -- "$@" "${pair#*:}" "$v"; fi
done
# Switches: 1, true, yes or on turn them on.
for pair in IN_MEMORY:--in-memory FRIENDLY:--friendly; do
  eval "v=\${IOTMOCK_${pair%%:*}:-}"
  case "$v" in
    1 | true | yes | on) set -- "$@" "${pair#*:}" ;;
  esac
done

state=${IOTMOCK_STATE_DIR:-/var/lib/iotmock}
if [ -e "$state" ] && ! [ -w "$state" ]; then
  echo "iotmock: the state directory $state is not writable by uid $(id -u);" \
    "a host directory mounted there must belong to 10001:10001 (or run with --user)" >&2
  exit 1
fi

exec /usr/bin/iotmock "$@"
