"""``benchmarks/bench_state_save.py`` (issue 19 item 4: what the per-epoch state write costs) on the tiny
preset: it times the search's own ``save_state`` and reports the size of the file that wrote."""
from __future__ import annotations

import json

from helpers import load_benchmark


def test_it_reports_the_written_state_with_and_without_the_asgd_average(capsys, tmp_path):
    from lsh_tune.models import build_model, get_preset

    bench = load_benchmark("bench_state_save")
    assert bench.main(["--preset", "tiny", "--repeat", "1", "--dir", str(tmp_path)]) == 0
    plain, averaged, before = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert [(r["averaged"], r["counts"]) for r in (plain, averaged, before)] == \
        [(False, None), (True, "int32"), (True, "int64")]
    params = sum(p.numel() for p in build_model(get_preset("stacked_lstm", "tiny")[0], 10000).parameters())
    # the state holds the float32 weights (4 bytes each) and masks; the average adds a float32 copy of every
    # weight and an int32 counter per weight: 8 bytes per weight (12 with int64 counters), within the
    # 0.1 MB the sizes are printed to and torch.save's per-tensor records (a few kB)
    assert plain["state_mb"] * 2 ** 20 > 4 * params
    added = (averaged["state_mb"] - plain["state_mb"]) * 2 ** 20
    assert 8 * params - 0.2 * 2 ** 20 < added < 8 * params + 0.2 * 2 ** 20, (added, params)
    added_before = (before["state_mb"] - plain["state_mb"]) * 2 ** 20
    assert 12 * params - 0.2 * 2 ** 20 < added_before < 12 * params + 0.2 * 2 ** 20, (added_before, params)
    # save_s printed to 1 ms, the share to 1e-4: they agree within 1e-4 + 1e-3 / 17.7
    assert plain["save_s"] > 0 and abs(plain["share_of_epoch"] - plain["save_s"] / 17.7) < 2e-4
    assert not any(tmp_path.iterdir())  # the temporary directory is removed
