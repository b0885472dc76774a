"""The saved itchat session (hot reload): a pickle of live credentials, kept private.

itchat loads it with ``pickle.load``, so whoever can write it can run code in this process,
and whoever can read it can use the WeChat session. The directory is created 0700 and the
file ends up 0600 (the service also runs with umask 077). A file or directory that is
group- or world-writable, or not owned by this user, is never handed to itchat: the file is
set aside and the service logs in with a QR code instead. Its contents are never logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

Verdict = Literal["missing", "ok", "unsafe"]


@dataclass(frozen=True, slots=True)
class Inspection:
    verdict: Verdict
    problem: str | None = None


def _problem(st: os.stat_result, what: str) -> str | None:
    if st.st_uid != os.geteuid():
        return f"{what} is owned by uid {st.st_uid}, not by this process (uid {os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{what} is group- or world-writable (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


class SessionFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.directory = path.parent

    def prepare_dir(self) -> str | None:
        """Create the directory 0700 if needed; the reason it is unsafe, or None."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = os.stat(self.directory)
        except OSError as exc:
            return f"session directory unusable: {type(exc).__name__}"
        if not stat.S_ISDIR(st.st_mode):
            return "session directory is not a directory"
        return _problem(st, "session directory")

    def inspect(self) -> Inspection:
        """Whether the file may be handed to itchat's ``pickle.load``."""
        problem = self.prepare_dir()
        if problem is not None:
            return Inspection("unsafe", problem)
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return Inspection("missing")
        except OSError as exc:
            return Inspection("unsafe", f"session file unreadable: {type(exc).__name__}")
        if not stat.S_ISREG(st.st_mode):
            return Inspection("unsafe", "session file is not a regular file (a symlink?)")
        problem = _problem(st, "session file")
        if problem is not None:
            return Inspection("unsafe", problem)
        if st.st_mode & (stat.S_IRGRP | stat.S_IROTH):
            # Readable by others but not writable: ours and untampered, just too open.
            with contextlib.suppress(OSError):
                os.chmod(self.path, 0o600)
        return Inspection("ok")

    def set_aside(self) -> bool:
        """Move an unsafe file out of itchat's way (kept for a human to look at)."""
        target = self.path.with_name(f"{self.path.name}.rejected-{int(time.time())}")
        try:
            os.rename(self.path, target)
        except FileNotFoundError:
            return True
        except OSError as exc:
            log.error("session_file_set_aside_failed", extra={"error": type(exc).__name__})
            return False
        with contextlib.suppress(OSError):
            os.chmod(target, 0o600)
        log.warning("session_file_set_aside", extra={"moved_to": target.name})
        return True

    def secure(self) -> None:
        """itchat writes the file with the process umask; make sure it is 0600."""
        with contextlib.suppress(FileNotFoundError):
            os.chmod(self.path, 0o600)

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def exists(self) -> bool:
        return self.path.exists()
