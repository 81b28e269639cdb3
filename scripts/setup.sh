#!/usr/bin/env bash
# All set-up on a fresh machine: the package with its dev tools (CPU torch 2.13.0 from the local
# wheel), the CPU Triton server, and Debian's Prometheus and Pushgateway, which the monitoring tests start on 127.0.0.1
# themselves (nothing is left running as a service).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus >/dev/null || ! command -v prometheus-pushgateway >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    prometheus prometheus-pushgateway >/dev/null
fi
python -m pip install --quiet --disable-pip-version-check torch==2.13.0 -e ".[dev]"
# The CPU tritonserver binary (and its Python backend) that `damo serve local`, the local
# pipeline's deploy step and the serving tests run. --no-deps: the wheel pins numpy<2, and only
# its binary is used, never the pytriton package.
python -m pip install --quiet --disable-pip-version-check --no-deps nvidia-pytriton==0.7.0
