"""Entries the notifier cannot understand go to the dead-letter stream, once, for a human.

The dead letter is a stream entry like any other (``event`` = ``dead_letter``, ``data``,
``ts``); its data names the source stream, the entry id, the group that gave up on it, the
reason, and carries the entry's fields unchanged. Copy and acknowledgement are one script:
if another consumer already acknowledged the entry, nothing is copied twice.
"""

from __future__ import annotations

from typing import Final

import redis.asyncio as aredis

from shared.dead_letters import DEAD_LETTER, DeadLetter
from shared.streams import encode

# KEYS: source stream, dead-letter stream. ARGV: group, entry id, maxlen, then field/value*
_DEAD_LETTER: Final = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return '' end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
"""


class DeadLetters:
    def __init__(self, client: aredis.Redis, key: str, *, group: str, maxlen: int) -> None:
        self._key = key
        self._group = group
        self._maxlen = maxlen
        self._script = client.register_script(_DEAD_LETTER)

    async def send(self, source: str, entry_id: str, fields: dict[str, str], reason: str) -> bool:
        """Copy and ack; False if the entry was acknowledged already (nothing copied)."""
        letter = DeadLetter(
            source=source, id=entry_id, group=self._group, reason=reason, fields=fields
        )
        args: list[str | int] = [self._group, entry_id, self._maxlen]
        for name, value in encode(DEAD_LETTER, letter).items():
            args += (name, value)
        copied = await self._script(keys=[source, self._key], args=args)
        return bool(copied)
