"""``make demo`` end to end: devstack starts Redis, the simulator and the three services under
honcho; ``curl -N /stream`` then shows a ``login`` event whose ``extra`` is a PNG."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from procs import REPO, wait_for
from sse import Parser

from shared.local_redis import free_port

PNG = b"\x89PNG\r\n\x1a\n"


def test_demo_stack_serves_a_qr_code_over_sse(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WX_") and k != "REDIS_URL"}
    env.update(
        WX_HTTP_PORT=str(port),
        WX_SIM_PORT=str(free_port()),
        WX_GATEWAY_OPS_PORT=str(free_port()),
        WX_LOGIN_OPS_PORT=str(free_port()),
        WX_NOTIFIER_OPS_PORT=str(free_port()),
    )
    log = (tmp_path / "devstack.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.devstack", "demo", "--run-dir", str(run_dir)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        secret_file = run_dir / "admin_secret"
        wait_for(secret_file.exists, timeout=20, what="the generated admin secret")
        assert secret_file.stat().st_mode & 0o777 == 0o600
        assert run_dir.stat().st_mode & 0o777 == 0o700
        secret = secret_file.read_text().strip()
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, timeout=30)
        token = httpx.post(f"{base}/api/token", json={"secret": secret}).json()["token"]

        parser = Parser()
        qr: dict[str, str] | None = None
        with httpx.stream(
            "GET", f"{base}/stream", headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as resp:
            for text in resp.iter_text():
                for event in parser.feed(text):
                    if event.event == "login" and event.json()["type"] == "scan_qr_code":
                        qr = event.json()
                if qr is not None:
                    break
        assert qr is not None
        assert base64.b64decode(qr["extra"]).startswith(PNG)
        output = (tmp_path / "devstack.log").read_text()
        assert secret in output  # printed beside the URL for the person who ran it
        assert f"http://127.0.0.1:{port}/" in output
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    assert proc.returncode is not None
