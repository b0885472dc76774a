"""The dead-letter entry: what a consumer could not understand, kept on ``<ns>:dead`` for a
human. Every service writes the same shape (event ``dead_letter``)."""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict

DEAD_LETTER: Final = "dead_letter"


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str  # the stream key the entry was read from
    id: str  # its entry id there
    group: str  # the consumer group that gave up on it
    reason: str
    fields: dict[str, str]  # the entry as it was (values cut to a bounded length)
