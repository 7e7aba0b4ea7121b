"""Reference-spectrum cache: stable keys, atomic save -> load round trip, reuse."""
from __future__ import annotations

import os

import numpy as np

from lsh_tune.lyapunov import LSConfig, ReferenceCache, reference_key
from lsh_tune.models import get_preset


def test_key_is_stable_and_sensitive_to_every_input():
    spec = get_preset("stacked_lstm", "tiny")[0]
    key = reference_key(spec, "ptb", 0, LSConfig())
    assert key == reference_key(spec.to_dict(), "ptb", 0, LSConfig())
    others = {reference_key(get_preset("rhn", "tiny")[0], "ptb", 0, LSConfig()),
              reference_key(spec, "wikitext-2", 0, LSConfig()),
              reference_key(spec, "ptb", 1, LSConfig()),
              reference_key(spec, "ptb", 0, LSConfig(k=5)),
              reference_key(spec, "ptb", 0, LSConfig(state="hc")),
              reference_key(spec, "ptb", 0, LSConfig(), extra={"vocab_size": 10000})}
    assert key not in others and len(others) == 6


def test_save_load_round_trip_keeps_non_finite_values(tmp_path):
    cache = ReferenceCache(tmp_path / "ls")
    hist = np.array([[0.1, -1.0, -np.inf], [0.2, -0.9, -3.0]])
    final = np.array([0.3, -0.8, np.nan])
    cache.save("k1", hist, final, {"epochs": 2})
    ref = cache.load("k1")
    np.testing.assert_array_equal(ref.history, hist)
    np.testing.assert_array_equal(ref.final, final)
    assert ref.meta == {"epochs": 2}
    assert len(ref.as_history()) == 3
    assert [p for p in os.listdir(tmp_path / "ls") if p.endswith(".tmp")] == []


def test_get_or_compute_computes_once(tmp_path):
    cache = ReferenceCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return [np.zeros(3)], np.ones(3)

    first, cached1 = cache.get_or_compute("k", compute)
    second, cached2 = cache.get_or_compute("k", compute)
    assert (cached1, cached2) == (False, True) and len(calls) == 1
    np.testing.assert_array_equal(first.final, second.final)


def test_missing_or_corrupt_file_is_a_miss(tmp_path):
    cache = ReferenceCache(tmp_path)
    assert cache.load("absent") is None
    cache.path("bad").write_bytes(b"not an npz")
    assert cache.load("bad") is None


def test_cache_on_an_object_store_and_truncated_entries(s3):
    """The same cache on a real S3-compatible server; a truncated entry is a miss, not an error."""
    cache = ReferenceCache(s3.uri("refs"))
    hist = np.array([[0.1, -np.inf], [0.2, -3.0]])
    where = cache.save("k", hist, hist[-1], {"val_ppl": 100.0})
    assert str(where).endswith("refs/k.npz") and "endpoint_override" not in str(where)
    ref = cache.load("k")
    np.testing.assert_array_equal(ref.history, hist)
    assert ref.meta == {"val_ppl": 100.0} and cache.load("absent") is None
    cache.storage.write_bytes("t.npz", cache.storage.read_bytes("k.npz")[:50])
    assert cache.load("t") is None
