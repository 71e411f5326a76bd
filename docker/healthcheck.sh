#!/bin/bash
# HEALTHCHECK of the iotmock image: GET /_iotmock/health on the control-plane port must answer
# 200. Plain bash (/dev/tcp), so the image needs no curl or wget.
port=${IOTMOCK_HTTP_PORT:-4580}
case "${IOTMOCK_BIND:-0.0.0.0}" in
  0.0.0.0 | "") addr=127.0.0.1 ;;
  :: | "[::]") addr=::1 ;;
  *) addr=$IOTMOCK_BIND ;;
esac
exec 3<>"/dev/tcp/$addr/$port" || exit 1
printf 'GET /_iotmock/health HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
IFS= read -r -t 2 status <&3 || exit 1
case "$status" in
  "HTTP/1."[01]" 200"*) exit 0 ;;
  *) echo "health: ${status%$'\r'}"; exit 1 ;;
esac
