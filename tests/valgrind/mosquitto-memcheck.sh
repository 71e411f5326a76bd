#!/bin/sh
# Stands in for /usr/sbin/mosquitto when `iotmock serve` runs with IOTMOCK_MOSQUITTO pointing
# here: the real broker (with iotmock.so) under valgrind's memcheck. Used by
# tests/integration/test_valgrind.py (docs/fuzzing.md, Memcheck).
#   IOTMOCK_VALGRIND_LOG    where memcheck writes its report (required)
#   IOTMOCK_VALGRIND_EXTRA  more valgrind options, split on blanks (optional)
#   IOTMOCK_REAL_MOSQUITTO  the broker (default /usr/sbin/mosquitto)
# Exit status 97 when memcheck counted an error; a definite leak counts as one.
#   --keep-debuginfo  the broker unloads the plugin before the leak check: without it, frames
#                     of iotmock.so in the loss records would be "???"
#   --fair-sched      memcheck runs one thread at a time; this shares the core fairly between
#                     the broker loop, the worker pool and the HTTP threads
set -eu
: "${IOTMOCK_VALGRIND_LOG:?set IOTMOCK_VALGRIND_LOG to the report file}"
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2086
exec valgrind --tool=memcheck --error-exitcode=97 --log-file="$IOTMOCK_VALGRIND_LOG" \
  --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite \
  --suppressions="$here/third-party.supp" --keep-debuginfo=yes --num-callers=30 \
  --track-fds=no --fair-sched=try ${IOTMOCK_VALGRIND_EXTRA:-} \
  "${IOTMOCK_REAL_MOSQUITTO:-/usr/sbin/mosquitto}" "$@"
