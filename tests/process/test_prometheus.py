"""The Prometheus side: a real Prometheus scrapes gwd; the alert rules, scrape config and dashboard hold up."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request

import pytest
from backend import Backend
from support import ROOT, free_port, request, scrape, total, wait_for

pytestmark = pytest.mark.process

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus) is not installed")
needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus is not installed")

EXERCISE = """
[server]
state_dir = "{state}"

[[routes]]
route = "GET /ok"
integration = {{ type = "http", uri = "{backend}/ok" }}

[[routes]]
route = "GET /down"
integration = {{ type = "http", uri = "http://127.0.0.1:9/down" }}

[[routes]]
route = "GET /cached"
integration = {{ type = "http", uri = "{backend}/cached" }}
cache = {{ ttl = "60s" }}

[[routes]]
route = "GET /limited"
integration = {{ type = "mock", body = "x" }}
throttle = {{ rate = 0.01, burst = 1 }}
"""


@needs_promtool
def test_promtool_accepts_the_alert_rules_and_the_scrape_config():
    for command in (["check", "rules", "etc/prometheus/gwd-alerts.yml"], ["check", "config", "etc/prometheus/prometheus.yml"]):
        checked = subprocess.run(["promtool", *command], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_metric_the_dashboard_queries_is_in_a_live_scrape(tmp_path, start_daemon):
    dashboard = json.loads((ROOT / "etc/grafana/gwd-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    expressions.append(dashboard["templating"]["list"][1]["query"])
    queried = {re.sub(r"_(bucket|sum|count)$", "", name) for expr in expressions for name in re.findall(r"\bgwd_[a-z_]+", expr)}
    assert len(queried) >= 10
    with Backend() as backend:
        daemon = start_daemon(EXERCISE.format(state=tmp_path / "state", backend=backend.url), workers=1)
        statuses = [request(daemon.port, "GET", path).status for path in ("/ok", "/down", "/cached", "/cached", "/limited", "/limited")]
        assert statuses == [200, 502, 200, 200, 200, 429]
        daemon.get("/ok")
        wait_for(lambda: total(scrape(daemon), "gwd_throttled_requests_total") == 1, 5, "the counts flushed")
        exported = {line.split()[2] for line in scrape(daemon).splitlines() if line.startswith("# TYPE ")}
    exported |= {name[: -len("_total")] for name in exported if name.endswith("_total")}
    assert queried <= exported, queried - exported


@needs_prometheus
def test_a_real_prometheus_counts_what_was_sent(tmp_path, start_daemon):
    daemon = start_daemon(EXERCISE.format(state=tmp_path / "state", backend="http://127.0.0.1:9"), workers=2)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gwd\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{daemon.admin_port}']\n"
    )
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"),
    )
    try:
        sent = 0
        for _ in range(120):
            assert request(daemon.port, "GET", "/limited").status in (200, 429)
            sent += 1

        def query() -> float | None:
            url = f"http://127.0.0.1:{port}/api/v1/query?query=sum(gwd_requests_total)"
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    result = json.load(response)["data"]["result"]
            except OSError:
                return None
            return float(result[0]["value"][1]) if result else None

        wait_for(lambda: query() == sent, 60, f"Prometheus to see {sent} requests", interval=0.5)
    finally:
        prometheus.terminate()
        try:
            prometheus.wait(10)
        except subprocess.TimeoutExpired:
            prometheus.kill()
