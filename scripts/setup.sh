#!/usr/bin/env bash
# Installs what is missing on a Debian 12 machine (as root), then configures and builds iotmock.
#   scripts/setup.sh release   -> build/release   (what `scripts/serve` runs)
#   scripts/setup.sh test      -> build/asan      (ASan + UBSan, plus the test tools)
#                                 and build/valgrind (no sanitizer: the broker under memcheck)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-release}

build_pkgs=(cmake make gcc pkg-config openssl ca-certificates
  mosquitto mosquitto-dev libmosquitto-dev libssl-dev libcjson-dev uuid-dev libsqlite3-dev libmicrohttpd-dev
  libcurl4-openssl-dev libcbor-dev uthash-dev)
test_pkgs=(mosquitto-clients python3 python3-paho-mqtt python3-pytest python3-cbor2 python3-cryptography
  awscli python3-boto3 sqlite3 nodejs npm curl clang libclang-rt-14-dev valgrind)

pkgs=("${build_pkgs[@]}")
[ "$mode" = test ] && pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  # node and npm may come from elsewhere than Debian (the CI image ships them): accept those.
  case "$p" in nodejs|npm) command -v "${p/nodejs/node}" >/dev/null 2>&1 && continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

case "$mode" in
  release) dir=build/release; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF) ;;
  test)    dir=build/asan;    flags=(-DCMAKE_BUILD_TYPE=Debug -DIOTMOCK_SANITIZE=ON) ;;
  *) echo "usage: scripts/setup.sh release|test" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" "${flags[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)"

if [ "$mode" = test ]; then
  # tests/integration/test_valgrind.py runs the broker under valgrind, which cannot load an ASan
  # plugin: a second tree without sanitizers, built as the release is, the command and plugin only.
  cmake -S . -B build/valgrind -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
  cmake --build build/valgrind -j"$(nproc)" --target iotmock
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi
