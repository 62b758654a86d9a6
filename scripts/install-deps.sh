#!/usr/bin/env bash
# Installs the Debian 12 packages rsgate needs to build and test, and only those that
# are missing: `apt-get update` once, then one `apt-get install -y` of the missing set.
# Called by `make run` and `make test`; safe to run again (does nothing when all present).
set -euo pipefail

packages=(
  g++-12 make cmake ninja-build pkg-config clang-14 libclang-rt-14-dev
  libboost1.81-dev libboost-json1.81-dev libboost-program-options1.81-dev
  libssl-dev libsqlite3-dev libsodium-dev libfmt-dev libtomlplusplus-dev catch2
  openssl curl sqlite3 util-linux python3 python3-nacl openssh-client openssh-server
  tinyproxy-bin libqrencode-dev oathtool python3-yaml python3-jsonschema
  chromium chromium-driver nodejs npm
)
if [ "${RSGATE_EXTRA_PACKAGES:-}" != "" ]; then
  # shellcheck disable=SC2206
  packages+=(${RSGATE_EXTRA_PACKAGES})
fi

missing=()
for p in "${packages[@]}"; do
  # Node.js from elsewhere (nodesource) brings its own npm, which Debian's npm would conflict with.
  if [ "$p" = nodejs ] && command -v node >/dev/null; then continue; fi
  if [ "$p" = npm ] && command -v npm >/dev/null; then continue; fi
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
