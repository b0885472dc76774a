"""The login service's settings (env prefix ``WX_``), on top of the shared ones."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from shared.settings import CommonSettings


class LoginSettings(CommonSettings):
    """Where WeChat is, where the session lives, how the lease and the backoff behave."""

    # Real WeChat by default; the simulator (tools/wechat_sim) in tests and in `make demo`.
    wechat_base_url: str = "https://login.weixin.qq.com"
    # Private directory (0700) holding the itchat session pickle, one file per account.
    session_dir: Path = Path(".run/session")
    ops_port: int = Field(default=9101, ge=0, le=65535)

    # One owner per account: the lease expires ttl after the owner's last renewal; a standby
    # polls for it every lease_poll_seconds.
    lease_ttl_seconds: float = Field(default=5.0, gt=0)
    lease_renew_seconds: float = Field(default=1.5, gt=0)
    lease_poll_seconds: float = Field(default=0.5, gt=0)

    # Exponential backoff with jitter after a failed login attempt (unreachable, refused,
    # protocol error): base * 2**n, capped.
    backoff_base_seconds: float = Field(default=2.0, gt=0)
    backoff_max_seconds: float = Field(default=300.0, gt=0)

    # QR codes shown in one login attempt before the service goes idle until `relogin`.
    max_qr_codes: int = Field(default=10, ge=1)
    # No progress at all (no QR, no scan, no answer) for this long: the attempt is abandoned.
    login_stall_seconds: float = Field(default=120.0, gt=0)
    # itchat sets no timeout on most requests; these bound every request it makes
    # (long polls included: real WeChat holds them about 25 s).
    http_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    http_read_timeout_seconds: float = Field(default=60.0, gt=0)

    # Commands older than this when read (e.g. sent while no login process ran) are skipped.
    command_max_age_seconds: float = Field(default=300.0, gt=0)
    # How long SIGTERM may take before the process exits anyway.
    shutdown_grace_seconds: float = Field(default=4.0, gt=0)

    download_media: bool = False
    media_dir: Path = Path(".run/media")

    @model_validator(mode="after")
    def _renew_well_inside_ttl(self) -> LoginSettings:
        if self.lease_renew_seconds * 2 > self.lease_ttl_seconds:
            raise ValueError("WX_LEASE_RENEW_SECONDS must be at most half of WX_LEASE_TTL_SECONDS")
        if self.backoff_base_seconds > self.backoff_max_seconds:
            raise ValueError("WX_BACKOFF_BASE_SECONDS must not exceed WX_BACKOFF_MAX_SECONDS")
        return self

    @property
    def session_file(self) -> Path:
        return self.session_dir / f"{self.account}.pkl"
