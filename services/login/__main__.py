"""``python -m services.login``: run the login service until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from services.login.itchat_logging import install_redaction
from services.login.service import LoginService, OpsPortUnavailable
from services.login.settings import LoginSettings
from shared import log


def main() -> None:
    # Everything this process writes (the session pickle, media) is private to its user.
    os.umask(0o077)
    settings = LoginSettings()
    log.setup(settings.log_level, settings.log_format)
    install_redaction()
    log.bind(service="login", account=settings.account)
    service = LoginService(settings)
    try:
        asyncio.run(service.run())
    except OpsPortUnavailable as exc:
        logging.getLogger("services.login").error("ops_port_unavailable", extra={"error": str(exc)})
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
