"""Every Redis key name, built in one place.

All of one account's keys share a Redis Cluster hash tag (``{account}``) so they live on
one shard and multi-key scripts (the notifier's count-and-publish) stay legal in a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    account: str
    namespace: str | None = None

    @property
    def prefix(self) -> str:
        # The namespace may be set to run several deployments on one Redis; the hash tag
        # always wraps the account.
        base = self.namespace or "wx"
        return f"{base}:{{{self.account}}}"

    @property
    def events(self) -> str:
        """Browser-facing events (login steps, notifications, messages, resets)."""
        return f"{self.prefix}:events"

    @property
    def messages(self) -> str:
        """Every received WeChat message, normalized."""
        return f"{self.prefix}:messages"

    @property
    def commands(self) -> str:
        """Commands from the dashboard to the workers (logout, relogin, mark read)."""
        return f"{self.prefix}:commands"

    def message_seen(self, message_id: str) -> str:
        """Set when a received message is stored, so a retried store writes nothing."""
        return f"{self.prefix}:msg:{message_id}"

    @property
    def dead_letters(self) -> str:
        """Entries a consumer could not understand, kept for a human to look at."""
        return f"{self.prefix}:dead"

    @property
    def unread(self) -> str:
        """The notifier's unread counter."""
        return f"{self.prefix}:unread"

    @property
    def read_mark(self) -> str:
        """Where the last mark-read stands (the command's stream position)."""
        return f"{self.prefix}:unread:mark"

    @property
    def counted(self) -> str:
        """Message ids already counted since the last mark-read (idempotence)."""
        return f"{self.prefix}:counted"

    @property
    def published_count(self) -> str:
        """The last unread count appended to the events stream."""
        return f"{self.prefix}:published"

    @property
    def login_lease(self) -> str:
        """Which login process owns the account, with a fencing token."""
        return f"{self.prefix}:login:lease"

    @property
    def login_fence(self) -> str:
        """Monotonic fencing counter for the login lease."""
        return f"{self.prefix}:login:fence"
