"""``make run`` / ``make demo``: a private Redis, then the services under honcho.

``run`` drives the real WeChat; ``demo`` adds the WeChat simulator and points the login
service at it, so the whole flow can be tried without a phone. State lives in ``.run/``
(mode 0700): Redis's append-only file, the itchat session, and the admin secret generated on
the first start (0600), which is printed beside the dashboard URL.

``REDIS_URL`` (or ``WX_REDIS_URL``) points everything at an existing Redis instead.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from shared.local_redis import LocalRedis

REPO = Path(__file__).resolve().parent.parent


def admin_secret(run_dir: Path) -> str:
    """The dashboard secret: WX_ADMIN_SECRET if set, else one kept in .run/ (0600)."""
    if os.environ.get("WX_ADMIN_SECRET"):
        return os.environ["WX_ADMIN_SECRET"]
    path = run_dir / "admin_secret"
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def stack_env(mode: str, run_dir: Path, redis_url: str, secret: str) -> dict[str, str]:
    env = {
        "WX_REDIS_URL": redis_url,
        "WX_ADMIN_SECRET": secret,
        "WX_SESSION_DIR": str(run_dir / "session"),
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    if mode == "demo":
        sim_port = os.environ.get("WX_SIM_PORT", "8900")
        env["WX_SIM_PORT"] = sim_port
        env["WX_WECHAT_BASE_URL"] = f"http://127.0.0.1:{sim_port}"
        env["WX_SIM_CONTROL_URL"] = f"http://127.0.0.1:{sim_port}/_sim"
    # The caller's own WX_ settings win over these defaults.
    env.update({k: v for k, v in os.environ.items() if k.startswith("WX_") and k != "WX_REDIS_URL"})
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["run", "demo"])
    parser.add_argument("--run-dir", type=Path, default=REPO / ".run")
    opts = parser.parse_args()
    run_dir: Path = opts.run_dir
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    run_dir.chmod(0o700)

    redis_url = os.environ.get("WX_REDIS_URL") or os.environ.get("REDIS_URL")
    local: LocalRedis | None = None
    if not redis_url:
        local = LocalRedis(run_dir / "redis", appendonly=True)
        local.start()
        redis_url = local.url
    secret = admin_secret(run_dir)
    env = stack_env(opts.mode, run_dir, redis_url, secret)
    port = env.get("WX_HTTP_PORT", "8000")
    print(f"\n  wxstream {opts.mode}: http://127.0.0.1:{port}/", flush=True)
    print(f"  admin secret:  {secret}   (kept in {run_dir / 'admin_secret'})", flush=True)
    print(f"  redis:         {redis_url}\n", flush=True)

    procfile = REPO / ("Procfile.demo" if opts.mode == "demo" else "Procfile")
    honcho = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "-f", str(procfile), "-d", str(REPO)],
        env={**os.environ, **env},
    )

    def forward(signum: int, frame: object) -> None:
        honcho.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        return honcho.wait()
    finally:
        if local is not None:
            local.stop()


if __name__ == "__main__":
    sys.exit(main())
