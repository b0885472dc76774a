"""Settings every service shares, read from the environment (prefix ``WX_``).

Each service extends :class:`CommonSettings` with its own fields in its own package; the
names here are the ones that must agree between services.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.keys import Keys


class CommonSettings(BaseSettings):
    """Where Redis is, which account, how to log; shared by login, notifier and gateway."""

    model_config = SettingsConfigDict(env_prefix="WX_", extra="ignore")

    # REDIS_URL without the prefix is accepted too: it is what every Redis tool reads.
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("WX_REDIS_URL", "REDIS_URL"),
    )
    account: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    namespace: str | None = None
    env: Literal["development", "production"] = "development"
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # How long one Redis command may take before the connection counts as stalled. Blocking
    # reads add their own block time on top of this (see shared.redis_client).
    redis_timeout_seconds: float = Field(default=5.0, gt=0)

    events_maxlen: int = Field(default=100_000, ge=100)
    messages_maxlen: int = Field(default=100_000, ge=100)

    ops_host: str = "127.0.0.1"
    ops_port: int = Field(default=9100, ge=0, le=65535)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def keys(self) -> Keys:
        return Keys(self.account, self.namespace)
