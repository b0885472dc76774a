"""The gateway's settings (``WX_`` environment variables) on top of the shared ones."""

from __future__ import annotations

from typing import Final

from pydantic import Field, SecretStr, model_validator

from shared.settings import CommonSettings

PLACEHOLDER_SECRETS: Final = frozenset({"", "change-me", "changeme", "secret", "admin", "password"})


class GatewaySettings(CommonSettings):
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    ops_port: int = Field(default=9100, ge=0, le=65535)

    # Dashboard sign-in. In production a placeholder refuses to start.
    admin_secret: SecretStr = SecretStr("change-me")
    # Key that signs session cookies; derived from the admin secret when unset.
    session_key: SecretStr | None = None
    session_ttl_seconds: int = Field(default=12 * 3600, ge=60)
    # "auto": Secure when the request came over https (X-Forwarded-Proto behind a proxy).
    cookie_secure: bool | None = None
    cors_origins: list[str] = Field(default_factory=list)
    sign_in_attempts_per_minute: int = Field(default=10, ge=1)

    # Streaming.
    keepalive_seconds: float = Field(default=15.0, gt=0)
    retry_ms: int = Field(default=2000, ge=100)
    retry_jitter_ms: int = Field(default=3000, ge=0)
    tail_size: int = Field(default=10_000, ge=10)
    # ... and at most this many bytes of them (whichever bound comes first).
    tail_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    # A client further behind the newest event than this is cut off; it resumes later.
    max_lag_events: int = Field(default=5_000, ge=1)
    read_batch: int = Field(default=1_000, ge=1)
    read_block_ms: int = Field(default=5_000, ge=10)
    replay_page: int = Field(default=1_000, ge=1)
    max_streams: int = Field(default=20_000, ge=1)
    max_streams_per_client: int = Field(default=64, ge=1)

    # A request (headers and body) not read whole this long after it began is answered
    # 408 and its connection closed: uvicorn has no such timeout of its own (slow loris).
    request_read_timeout_seconds: float = Field(default=10.0, gt=0)

    # Shutdown: open streams are ended within this many seconds of SIGTERM.
    drain_seconds: float = Field(default=10.0, ge=0)

    # The simulator's control API, for the demo phone panel (``make demo`` only).
    sim_control_url: str | None = None

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> GatewaySettings:
        secret = self.admin_secret.get_secret_value()
        if self.env == "production" and (secret.lower() in PLACEHOLDER_SECRETS or len(secret) < 16):
            raise ValueError(
                "WX_ADMIN_SECRET is a placeholder or shorter than 16 characters; "
                "refusing to start in production"
            )
        return self

    @property
    def max_lag(self) -> int:
        return min(self.max_lag_events, self.tail_size)
