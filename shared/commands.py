"""Commands from the dashboard to the workers, carried on ``<ns>:commands``."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

CommandName = Literal["logout", "relogin", "mark_read"]
COMMAND_NAMES: Final[frozenset[str]] = frozenset({"logout", "relogin", "mark_read"})

# Which consumer group handles which command: every worker reads the whole commands stream
# through its own group and acknowledges what is not its own.
LOGIN_COMMANDS: Final[frozenset[str]] = frozenset({"logout", "relogin"})
NOTIFIER_COMMANDS: Final[frozenset[str]] = frozenset({"mark_read"})


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Where the command came from, for the logs (e.g. "api", "test").
    origin: str = "api"
