#!/usr/bin/env bash
# scripts/browser.sh — makes sure headless Chromium and its WebDriver are installed, for the
# dashboard's browser tests (tests/api/browser.rs). Debian's chromium and chromium-driver,
# installed with apt when /usr/bin/chromium or /usr/bin/chromedriver is missing.
# BACKENDS_NO_INSTALL=1 never installs: it fails with what to run instead.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if [ "${BACKENDS_NO_INSTALL:-0}" = 1 ]; then
  echo "[browser] ERROR: chromium or chromedriver missing: apt-get install chromium chromium-driver" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "[browser] installing chromium and chromium-driver with apt" >&2
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >&2
/usr/bin/chromium --version >&2
