"""The notifier's settings: the shared ones (``WX_*``) plus its own (``WX_NOTIFIER_*``)."""

from __future__ import annotations

import os
import socket

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings


def default_consumer() -> str:
    """``<hostname>-<pid>``: unique per live process, so a restart never inherits a PEL blindly."""
    return f"{socket.gethostname()}-{os.getpid()}"


class NotifierSettings(CommonSettings):
    # Own fields carry a WX_NOTIFIER_ alias so one env file can serve every service;
    # tests and code may still pass them by field name.
    model_config = SettingsConfigDict(env_prefix="WX_", extra="ignore", validate_by_name=True)

    ops_port: int = Field(default=9102, ge=0, le=65535)

    group: str = Field(
        default="notifier",
        min_length=1,
        max_length=64,
        validation_alias="WX_NOTIFIER_GROUP",
        description="Consumer group on the messages and commands streams.",
    )
    consumer: str = Field(
        default_factory=default_consumer,
        min_length=1,
        max_length=128,
        validation_alias="WX_NOTIFIER_CONSUMER",
        description="This process's consumer name inside the group.",
    )
    coalesce_seconds: float = Field(
        default=0.15,
        ge=0,
        le=60,
        validation_alias="WX_NOTIFIER_COALESCE_SECONDS",
        description="A count change waits this long for more changes before it is published.",
    )
    claim_idle_seconds: float = Field(
        default=30.0,
        gt=0,
        validation_alias="WX_NOTIFIER_CLAIM_IDLE_SECONDS",
        description="A pending entry idle this long belongs to a dead consumer: claim it.",
    )
    claim_interval_seconds: float = Field(
        default=5.0,
        gt=0,
        validation_alias="WX_NOTIFIER_CLAIM_INTERVAL_SECONDS",
        description="How often to look for claimable entries and re-check the published count.",
    )
    read_block_seconds: float = Field(
        default=1.0,
        gt=0,
        le=30,
        validation_alias="WX_NOTIFIER_READ_BLOCK_SECONDS",
        description="Longest XREADGROUP block; also bounds how long a SIGTERM waits.",
    )
    batch_size: int = Field(
        default=200,
        ge=1,
        le=10_000,
        validation_alias="WX_NOTIFIER_BATCH_SIZE",
        description="Entries per XREADGROUP / XAUTOCLAIM call (and per count script).",
    )
    dead_letters_maxlen: int = Field(
        default=10_000,
        ge=100,
        validation_alias="WX_NOTIFIER_DEAD_LETTERS_MAXLEN",
    )
    backoff_max_seconds: float = Field(
        default=5.0,
        gt=0,
        validation_alias="WX_NOTIFIER_BACKOFF_MAX_SECONDS",
        description="Cap of the exponential backoff (with jitter) while Redis is unreachable.",
    )
