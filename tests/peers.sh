#!/usr/bin/env bash
# The real peers the test suite runs, installed with apt when missing (tox runs this first):
# git repositories and a D-Bus bus (update manager), a Mosquitto broker (MQTT), headless
# Chromium with its driver (the farm's fleet page).
set -euo pipefail
have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
missing=()
have git || missing+=(git)
have dbus-daemon || missing+=(dbus-daemon)
have mosquitto || missing+=(mosquitto)
have chromium || missing+=(chromium)
have chromedriver || missing+=(chromium-driver)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "The tests need: ${missing[*]} (Debian packages); install them, e.g. sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
