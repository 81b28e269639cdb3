"""Real Prometheus and Pushgateway processes on 127.0.0.1.

The binaries are Debian's ``prometheus`` (2.42) and ``prometheus-pushgateway`` (1.5), started
here on free ports with temporary data directories and stopped by the fixtures' finalisers;
the packages' own system services are never used. Missing binaries fail with the install
line, never skip: these tests are the proof that every dashboard query returns data.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import http_get

INSTALL = ("apt-get install -y prometheus prometheus-pushgateway (then leave the packages' "
           "services stopped; the tests start the binaries themselves)")
MANIFEST_CONFIG = Path(__file__).parents[2] / "manifests" / "base" / "prometheus.yml"


def binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file()
                                  else None)
    if path is None:
        pytest.fail(f"{name} binary not found; install it with: {INSTALL}", pytrace=False)
    return path


def prometheus_config(triton_target: str, pushgateway_target: str) -> dict[str, Any]:
    """The manifests' scrape jobs with local targets and a 1 s interval (config kept in sync)."""
    config = yaml.safe_load(MANIFEST_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    targets = {"triton": triton_target, "pushgateway": pushgateway_target}
    for job in config["scrape_configs"]:
        for key in [k for k in job if k.endswith("_sd_configs") or k == "static_configs"]:
            del job[key]
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> dict[str, Any]:
        """Instant query; returns the API's JSON (errors come back as status 'error')."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        try:
            return json.loads(http_get(url))
        except urllib.error.HTTPError as err:  # 400/422 carry the PromQL error as JSON
            return json.loads(err.read())

    def label_values(self, label: str, metric: str) -> list[str]:
        url = (f"{self.url}/api/v1/label/{label}/values?"
               f"{urllib.parse.urlencode({'match[]': metric})}")
        return json.loads(http_get(url))["data"]
