#!/usr/bin/env bash
# The test command (README: "Run the tests"). Installs what the tests need when it
# is missing, then runs the whole suite. Safe to run again and again.
#
#   scripts/test.sh            # everything
#   scripts/test.sh --test cli # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

# The real parts the tests run against, from Debian packages:
#   victoria-metrics (victoria-metrics, vmalert), prometheus (promtool), kubectl,
#   chromium (renders the SLO report page headless), prometheus-alertmanager
#   (prometheus-alertmanager and amtool: the routing and inhibition example),
#   jsonnet (renders the monitoring mixin of `fediprobe mixin`).
need=()
command -v victoria-metrics >/dev/null 2>&1 || need+=(victoria-metrics)
command -v vmalert >/dev/null 2>&1 || need+=(victoria-metrics)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v kubectl >/dev/null 2>&1 || need+=(kubectl)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v jsonnet >/dev/null 2>&1 || need+=(jsonnet)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "error: the tests need the Debian packages: ${need[*]}; install them (as root: apt-get install ${need[*]})" >&2
      exit 1
    fi
  fi
  echo "installing Debian packages the tests need: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Installing the prometheus or prometheus-alertmanager package may start its
  # service; the tests start their own processes on free ports and do not need it.
fi

cargo build --locked --all-targets
cargo test --locked "$@"
