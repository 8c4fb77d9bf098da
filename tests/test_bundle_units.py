"""Unit tests of the bundle stage's pieces that need no build."""

from __future__ import annotations

import json

import pytest

from trtis_build.bundle.verify import VerifyCache as _VerifyCache

pytestmark = pytest.mark.usefixtures("pure")


def test_verify_cache_keeps_the_most_recently_used_entries(tmp_path, monkeypatch):
    monkeypatch.setattr(_VerifyCache, "LIMIT", 3)
    path = tmp_path / "verify-cache.json"
    cache = _VerifyCache(path)
    for name in "abcd":
        cache.put(name, {"ops": [name]})
    assert cache.get("a") == {"ops": ["a"]}   # used again: now the newest
    cache.save()
    assert list(json.loads(path.read_text())) == ["c", "d", "a"]  # "b", the least recently used, went
    assert _VerifyCache(path).get("d") == {"ops": ["d"]}


def test_a_corrupt_verify_cache_is_ignored(tmp_path):
    path = tmp_path / "verify-cache.json"
    path.write_text("{not json")
    assert _VerifyCache(path).get("anything") is None
