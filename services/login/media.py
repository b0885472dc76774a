"""Optional download of received media (``WX_DOWNLOAD_MEDIA``), after the message is stored.

Files go to a private directory (0700, files 0600) and are named after the message id only:
a file name chosen by the sender never becomes a path here.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from shared.messages import ChatMessage

log = logging.getLogger(__name__)

DOWNLOADABLE: Final = frozenset({"image", "voice", "video", "file"})
_EXTENSIONS: Final = {"image": ".img", "voice": ".mp3", "video": ".mp4", "file": ".bin"}
_SAFE_EXT: Final = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


class MediaSaver:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, message: ChatMessage) -> Path:
        ext = _EXTENSIONS.get(message.type, ".bin")
        if message.type == "file" and message.media and message.media.file_name:
            own = os.path.splitext(message.media.file_name)[1]
            if _SAFE_EXT.match(own):
                ext = own.lower()
        safe_id = re.sub(r"[^A-Za-z0-9_-]", "_", message.id)
        return self.directory / f"{safe_id}{ext}"

    def save(self, item: Mapping[str, Any], message: ChatMessage) -> Path | None:
        download = item.get("Text")
        if message.type not in DOWNLOADABLE or not callable(download):
            return None
        path = self.path_for(message)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            download(str(path))  # itchat's own download function, on its session
            os.chmod(path, 0o600)
        except Exception as exc:
            log.warning(
                "media_download_failed", extra={"msg_id": message.id, "error": type(exc).__name__}
            )
            return None
        log.info("media_saved", extra={"msg_id": message.id, "file": path.name})
        return path
