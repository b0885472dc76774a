"""The peers' own virtualenv (``bench/.peers/venv``, gitignored), built on first use.

The peers (Flask-SSE on gunicorn+gevent, sse-starlette) and the plotting and profiling
tools live there, never in wxstream's own environment. Versions are pinned so two runs of
the benchmark measure the same peers.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PEERS_DIR = BENCH / ".peers"
VENV = PEERS_DIR / "venv"
PYTHON = VENV / "bin" / "python"

# wechat-admin's stack (Flask-SSE over Redis pub/sub, gunicorn with gevent workers), the
# naive FastAPI stack (sse-starlette + one XREAD per client), and the report's tools.
REQUIREMENTS = (
    "Flask-SSE==1.0.0",
    "Flask==3.1.3",
    "gunicorn==27.0.1",
    "gevent==26.9.0",
    "sse-starlette==3.7.0",
    "fastapi==0.165.0",
    "uvicorn[standard]==0.54.0",
    "redis[hiredis]==8.1.0",
    "matplotlib==3.11.2",
    "py-spy==0.4.3",
)


def _stamp() -> str:
    return hashlib.sha256("\n".join(REQUIREMENTS).encode()).hexdigest()[:16]


def ready() -> bool:
    stamp = VENV / ".bench-stamp"
    return PYTHON.exists() and stamp.exists() and stamp.read_text().strip() == _stamp()


def ensure(*, quiet: bool = True) -> Path:
    """Create or update the venv; returns its python. Raises CalledProcessError on failure."""
    if ready():
        return PYTHON
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    if not PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    args = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check"]
    if quiet:
        args.append("--quiet")
    subprocess.run([*args, *REQUIREMENTS], check=True, stdin=subprocess.DEVNULL)
    (VENV / ".bench-stamp").write_text(_stamp() + "\n")
    return PYTHON


def versions() -> dict[str, str]:
    """Installed versions of the peers' packages (from the venv's metadata)."""
    if not PYTHON.exists():
        return {}
    code = (
        "import importlib.metadata as m, json\n"
        "names = ['Flask-SSE', 'Flask', 'gunicorn', 'gevent', 'sse-starlette', 'fastapi',"
        " 'uvicorn', 'redis', 'matplotlib']\n"
        "print(json.dumps({n: m.version(n) for n in names}))\n"
    )
    out = subprocess.run([str(PYTHON), "-c", code], capture_output=True, text=True, check=True)
    import json

    result: dict[str, str] = json.loads(out.stdout)
    return result
