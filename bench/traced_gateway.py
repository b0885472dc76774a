"""The gateway, unchanged, under tracemalloc: ``SIGUSR1`` dumps a snapshot.

    python -m bench.traced_gateway SNAPSHOT_PREFIX

Each ``SIGUSR1`` writes ``<prefix>-<n>.snap`` (``tracemalloc.Snapshot.dump``), so
``bench.profile memory`` can compare the heap before and after N streams open.
"""

from __future__ import annotations

import signal
import sys
import tracemalloc
from types import FrameType


def main() -> None:
    prefix = sys.argv[1]
    tracemalloc.start(12)
    taken = 0

    def dump(signum: int, frame: FrameType | None) -> None:
        nonlocal taken
        tracemalloc.take_snapshot().dump(f"{prefix}-{taken}.snap")
        taken += 1

    signal.signal(signal.SIGUSR1, dump)
    from services.gateway.__main__ import main as gateway_main

    gateway_main()


if __name__ == "__main__":
    main()
