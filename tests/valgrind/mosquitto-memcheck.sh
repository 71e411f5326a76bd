#!/bin/sh
# Stands in for /usr/sbin/mosquitto when `iotmock serve` runs with IOTMOCK_MOSQUITTO pointing
# here: the real broker (with iotmock.so) under valgrind's memcheck.
#   IOTMOCK_VALGRIND_LOG   where memcheck writes its report (required)
#   IOTMOCK_VALGRIND_EXTRA more valgrind options, split on blanks (optional)
# Exit status 97 when memcheck counted an error (leaks of kind "definite" count too).
set -eu
: "${IOTMOCK_VALGRIND_LOG:?set IOTMOCK_VALGRIND_LOG to the report file}"
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2086
exec valgrind --tool=memcheck --error-exitcode=97 \
  --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite \
  --track-fds=no --fair-sched=try --keep-debuginfo=yes --num-callers=30 --suppressions="$here/third-party.supp" \
  --log-file="$IOTMOCK_VALGRIND_LOG" ${IOTMOCK_VALGRIND_EXTRA:-} \
  "${IOTMOCK_REAL_MOSQUITTO:-/usr/sbin/mosquitto}" "$@"
