"""Fixtures shared by every test: a real redis-server this run started, per-test accounts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shared.keys import Keys
from shared.local_redis import LocalRedis

pytest_plugins = ["gateway_fixtures"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """One redis-server for the whole run, on a free port: never the machine's 6379."""
    server = LocalRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> str:
    return redis_server.url


@pytest.fixture
def account() -> str:
    """A fresh account id per test: its keys share nothing with any other test's."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def keys(account: str) -> Keys:
    return Keys(account)


@pytest.fixture
def rclient(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    return path
