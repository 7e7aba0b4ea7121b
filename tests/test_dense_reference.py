"""The dense reference's lifecycle object (``lsh_tune.search._reference.DenseReference``): every state,
its progress, re-issues counted in the ledger's saved metadata, and its history taken from a real
reference cache."""
from __future__ import annotations

import numpy as np
import pytest

from lsh_tune.search._ls_fit import PoolLSFit
from lsh_tune.search._reference import REFERENCE_STATES, DenseReference, ReferenceFailed
from lsh_tune.search.keys import REFERENCE_CID


def test_not_needed_without_a_pool_fit_or_with_a_given_history():
    assert DenseReference(None, {}).state == "not_needed"
    given = DenseReference(PoolLSFit(np.zeros((2, 3))), {})
    assert given.state == "done" and not given.needed and not given.issue() and given.describe() == ""


def test_lifecycle_waiting_issued_training_failed_reissued_loaded(tmp_path):
    from lsh_tune.lyapunov import ReferenceCache

    meta = {"reference": {"cache": str(tmp_path / "cache"), "key": "k"}}
    ref = DenseReference(PoolLSFit(None), meta)
    seen = [ref.state]
    assert ref.needed and ref.owns(REFERENCE_CID) and not ref.owns("c000")
    assert ref.issue() and not ref.issue()          # handed out once per process
    seen.append(ref.state)
    ref.on_progress(2, 5)
    seen.append(ref.state)
    assert ref.describe() == "dense reference training (epoch 2/5), rounds wait for it"
    assert not ref.load()                           # nothing cached yet: nothing changes
    assert ref.on_failed(retries=1) and ref.reissued == 1 and meta["reissued"] == {REFERENCE_CID: 1}
    seen.append(ref.state)                          # waiting again, to be issued anew
    assert ref.issue()
    with pytest.raises(ReferenceFailed, match="failed 2 times"):
        ref.on_failed(retries=1)
    history = np.random.default_rng(0).normal(size=(4, 6))
    ReferenceCache(meta["reference"]["cache"]).save("k", history, history[-1])
    assert ref.load() and not ref.load()            # taken once; then it is done
    seen.append(ref.state)
    assert seen == ["waiting", "issued", "training", "waiting", "done"]
    assert set(seen) | {"not_needed"} == set(REFERENCE_STATES)
    np.testing.assert_array_equal(ref.ls_fit.reference, history)  # the cache's float64 numbers, unchanged
    assert not ref.on_failed(retries=0)             # a failure after it is done changes nothing


def test_a_restored_trial_binds_instead_of_a_new_issue():
    ref = DenseReference(PoolLSFit(None), {})
    ref.bind()
    assert ref.state == "issued" and not ref.issue()
