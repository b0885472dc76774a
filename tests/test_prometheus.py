"""A real Prometheus (Debian's package) scrapes the three running services on loopback with
the scrape settings of the manifests; promtool checks each service's real /metrics."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from gateway_fixtures import GatewayFactory
from procs import REPO, ServiceProc, wait_for

from shared.local_redis import free_port

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(
    not (PROMETHEUS and PROMTOOL and KUBECTL),
    reason="prometheus/promtool/kubectl missing: `make sysdeps` installs Debian's prometheus",
)

# One series per service that proves its own code (not only the client library) exported.
KEY_SERIES = {
    "gateway": "wxstream_gateway_reader_up",
    "login": "wxstream_login_lease_held",
    "notifier": "wxstream_notifier_pending",
}


def scrape_annotations() -> dict[str, dict[str, str]]:
    """prometheus.io/* annotations of each service's pod template in the rendered base."""
    rendered = subprocess.run(
        [str(KUBECTL), "kustomize", str(REPO / "deploy/k8s/base")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found: dict[str, dict[str, str]] = {}
    for doc in yaml.safe_load_all(rendered):
        if not doc or doc.get("kind") not in ("Deployment", "StatefulSet"):
            continue
        name = doc["metadata"]["name"]
        annotations = doc["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            found[name] = annotations
    return found


@pytest.fixture
def services(
    redis_url: str, account: str, tmp_path: Path, gateway_factory: GatewayFactory
) -> Iterator[dict[str, str]]:
    """The three services running; name → ops address host:port."""
    common = {"WX_REDIS_URL": redis_url, "WX_ACCOUNT": account}
    login_port, notifier_port = free_port(), free_port()
    login = ServiceProc(
        "services.login",
        {
            **common,
            "WX_OPS_PORT": str(login_port),
            # Nothing listens there: login stays up, reporting WeChat unreachable.
            "WX_WECHAT_BASE_URL": f"http://127.0.0.1:{free_port()}",
            "WX_SESSION_DIR": str(tmp_path / "session"),
        },
        tmp_path / "login.log",
    ).start()
    notifier = ServiceProc(
        "services.notifier", {**common, "WX_OPS_PORT": str(notifier_port)}, tmp_path / "n.log"
    ).start()
    gateway = gateway_factory()
    login.wait_http(f"http://127.0.0.1:{login_port}/healthz")
    notifier.wait_http(f"http://127.0.0.1:{notifier_port}/healthz")
    yield {
        "gateway": f"127.0.0.1:{gateway.ops_port}",
        "login": f"127.0.0.1:{login_port}",
        "notifier": f"127.0.0.1:{notifier_port}",
    }
    login.stop()
    notifier.stop()


def test_promtool_accepts_each_services_metrics(services: dict[str, str]) -> None:
    for name, addr in services.items():
        text = httpx.get(f"http://{addr}/metrics").text
        assert KEY_SERIES[name] in text
        assert "wxstream_redis_up" in text
        check = subprocess.run(
            [str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, text=True
        )
        assert check.returncode == 0, f"{name}: {check.stdout}{check.stderr}"


def test_prometheus_scrapes_every_service_with_the_manifest_settings(
    services: dict[str, str], tmp_path: Path
) -> None:
    annotations = scrape_annotations()
    assert set(annotations) == set(services)
    scrape_configs: list[dict[str, Any]] = []
    for name, addr in services.items():
        ann = annotations[name]
        assert ann["prometheus.io/port"] == "9100"  # the ops port every service listens on
        scrape_configs.append(
            {
                "job_name": name,
                "scrape_interval": "1s",
                "metrics_path": ann.get("prometheus.io/path", "/metrics"),
                "static_configs": [{"targets": [addr]}],
            }
        )
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": scrape_configs}))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    prom = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    log.close()
    api = f"http://127.0.0.1:{port}/api/v1"
    try:

        def all_up() -> bool:
            targets = httpx.get(f"{api}/targets").json()["data"]["activeTargets"]
            return len(targets) == 3 and all(t["health"] == "up" for t in targets)

        wait_for(all_up, timeout=30, interval=0.5, what="every target up")

        def series_present() -> bool:
            for name, series in KEY_SERIES.items():
                result = httpx.get(f"{api}/query", params={"query": series}).json()
                if not result["data"]["result"]:
                    return False
                assert result["data"]["result"][0]["metric"]["job"] == name
            return True

        wait_for(series_present, timeout=30, interval=0.5, what="the key series")
        up = httpx.get(f"{api}/query", params={"query": "wxstream_redis_up"}).json()
        assert {r["metric"]["job"] for r in up["data"]["result"]} == set(services)
    finally:
        prom.terminate()
        prom.wait(timeout=10)
