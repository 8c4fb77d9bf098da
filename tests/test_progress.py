"""Progress on long steps: a silent command gets a heartbeat line on schedule (mmdebstrap
assembling the default base), byte transfers report bytes, total and rate at most every few
seconds and once at the end (layer writes, pulls, pushes)."""

from __future__ import annotations

import sys

from trtis_build.core import process
from trtis_build.core.progress import ByteProgress
from trtis_build.image import oci


def test_a_silent_command_gets_heartbeats_and_a_chatty_one_its_last_line():
    beats = []
    process.run([sys.executable, "-c", "import time; print('fetching', flush=True); time.sleep(0.75)"],
                stage="test", heartbeat=(0.2, lambda took, last: beats.append((round(took, 1), last))))
    assert len(beats) >= 2 and all(last == "fetching" for _, last in beats), beats
    assert [took for took, _ in beats] == sorted(took for took, _ in beats)
    quiet = []
    process.run([sys.executable, "-c", "pass"], stage="test", heartbeat=(5, lambda *a: quiet.append(a)))
    assert quiet == []


def test_byte_progress_is_throttled_and_says_the_rate():
    now, lines = [0.0], []
    progress = ByteProgress("push sha256:abc", 10 << 20, lines.append, every=5, clock=lambda: now[0])
    for second in range(1, 11):
        now[0] = second
        progress.advance(1 << 20)
    progress.finish()
    assert lines == ["  push sha256:abc: 5.0 MiB of 10.0 MiB (1.0 MiB/s)",
                     "  push sha256:abc: 10.0 MiB of 10.0 MiB (1.0 MiB/s)",
                     "  push sha256:abc: 10.0 MiB of 10.0 MiB (1.0 MiB/s) done"]


def test_layer_writes_report_their_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr("trtis_build.core.progress.EVERY_S", 0.0)
    lines = []
    payload = b"x" * (3 << 20)
    oci.write_layer(oci.parent_dirs([oci.bytes_entry("opt/big.bin", payload)]), tmp_path / "blobs", epoch=0,
                    log=lines.append, what="layer 1/1")
    assert lines and lines[-1].startswith("  layer 1/1: 3.0 MiB of 3.0 MiB") and lines[-1].endswith("done")
