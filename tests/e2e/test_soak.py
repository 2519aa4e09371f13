"""The soak in two minutes: bench/soak's mixed load (wrk on small pages,
large transfers by SHA-256, bridges coming and going, users vanishing
mid-request) through a real hub, bridge node and nginx, with the binary
under test. The hub's and the node's RSS may grow at most 25% after
warm-up (looser than the bench's 5%: a sanitizer build keeps freed blocks
in quarantine, kept small here, and two minutes leave little time for the
heap to settle), their descriptors must come back to their count before
the load, and every transfer must arrive intact.
"""

import os
import sys

from helpers import require_binary, sluice_bin

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), "bench", "soak"))

import soak  # noqa: E402

RSS_LIMIT = 0.25
# A small quarantine, so freed blocks come back to the allocator instead
# of piling up to ASan's default 256 MiB as RSS.
QUARANTINE = "quarantine_size_mb=4:thread_local_quarantine_size_kb=256"


def test_soak_two_minutes(tmp_path):
    for tool in ("wrk", "curl", "nginx"):
        require_binary(tool)
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"ASAN_OPTIONS": (asan + ":" if asan else "") + QUARANTINE}
    s = soak.Soak(tmp_path, sluice_bin(), minutes=2, interval=5,
                  large_mb=8, env=env)
    try:
        s.start()
        s.run()
    finally:
        s.stop()
    ok, lines = s.verdict(RSS_LIMIT)
    print("\n".join(lines))
    assert ok, "\n".join(lines)
