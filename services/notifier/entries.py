"""Reading the notifier's two input streams: what an entry means, or why it is malformed.

A reason never quotes the entry's content (it may be message text): only the entry id,
field names and pydantic error types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from pydantic import ValidationError

from services.notifier.unread import Countable
from shared.commands import COMMAND_NAMES, NOTIFIER_COMMANDS, Command
from shared.events import MESSAGE
from shared.messages import ChatMessage
from shared.streams import MalformedEntry, decode

_MAX_ERRORS: Final = 5


@dataclass(frozen=True, slots=True)
class CommandEntry:
    entry_id: str
    name: str
    # Validated only for the notifier's own commands; the others are another group's job.
    command: Command | None


def describe(exc: ValidationError) -> str:
    """``"created_at: missing; text: string_type"``, without the offending input."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'data'}: {e['type']}" for e in errors]
    more = f" (+{len(parts) - _MAX_ERRORS} more)" if len(parts) > _MAX_ERRORS else ""
    return "; ".join(parts[:_MAX_ERRORS]) + more


def _name(value: str) -> str:
    return repr(value[:40])


def read_message(entry_id: str, fields: Mapping[str, str]) -> Countable:
    """A messages-stream entry: ``message`` with a valid ChatMessage, else MalformedEntry."""
    entry = decode(entry_id, fields)
    if entry.event != MESSAGE:
        raise MalformedEntry(f"entry {entry_id}: unexpected event {_name(entry.event)}")
    try:
        message = ChatMessage.model_validate_json(entry.data)
    except ValidationError as exc:
        raise MalformedEntry(f"entry {entry_id}: invalid message: {describe(exc)}") from None
    return Countable(entry_id=entry.id, message_id=message.id, ts_ms=entry.ts_ms)


def read_command(entry_id: str, fields: Mapping[str, str]) -> CommandEntry:
    """A commands-stream entry: a known command name (and, if ours, valid data)."""
    entry = decode(entry_id, fields)
    if entry.event not in COMMAND_NAMES:
        raise MalformedEntry(f"entry {entry_id}: unknown command {_name(entry.event)}")
    if entry.event not in NOTIFIER_COMMANDS:
        return CommandEntry(entry.id, entry.event, None)
    try:
        command = Command.model_validate_json(entry.data)
    except ValidationError as exc:
        raise MalformedEntry(f"entry {entry_id}: invalid command: {describe(exc)}") from None
    return CommandEntry(entry.id, entry.event, command)
