"""``python -m tools.wechat_sim``: serve the simulator for the demo or for manual poking."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from .app import create_app
from .server import SimUvicorn
from .state import SimConfig, SimState


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.wechat_sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=25.0,
        help="how long login polls and synccheck are held when idle (real WeChat: ~25)",
    )
    parser.add_argument("--contact-page-size", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    state = SimState(
        SimConfig(poll_seconds=args.poll_seconds, contact_page_size=args.contact_page_size)
    )
    # uvicorn's own access log prints query strings, which carry skeys and tickets.
    config = uvicorn.Config(
        create_app(state),
        host=args.host,
        port=args.port,
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    SimUvicorn(config, state).run()


if __name__ == "__main__":
    main()
