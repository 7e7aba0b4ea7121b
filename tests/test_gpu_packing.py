"""``--gpus-per-trial auto`` (the default): the pure choice of trials per GPU for the paper's three models
on an H200-sized and a 16 GB GPU, its reasons, the option, and its resolution against a running Ray
(no GPU → 0 in the shared tiny search through the CLI; fake declared GPUs of unknown memory → 1 per
GPU, stated; the autoscaler's GPU node types), saved with the search and kept on resume."""
from __future__ import annotations

import json
import os

import pytest

from lsh_tune.cli.search import main
from lsh_tune.errors import LSHUsageError
from lsh_tune.models import get_preset
from lsh_tune.search.config import SearchConfig
from lsh_tune.search.packing import (AUTO, BYTES_PER_PARAM, accelerator_memory, parse_gpus_per_trial,
                                     resolve_gpus_per_trial, trial_memory_bytes, trials_per_gpu)

H200, GPU16 = 141e9, 16e9
VOCAB = {"stacked_lstm": 10_000, "rhn": 10_000, "awd_lstm_mos": 33_278}  # PTB, PTB, WikiText-2


def _paper(model):
    return get_preset(model, "paper")


@pytest.mark.parametrize("model,params_m,on_h200,on_16gb", [
    ("stacked_lstm", 66.0, 4, 2),   # the measured throughput cap on an H200; ~5.2 GB each: 2 in 16 GB
    ("rhn", 23.5, 4, 4),            # ~3.3 GB each: 4 fit in 16 GB too
    ("awd_lstm_mos", 34.9, 2, 1),   # the 15-expert softmax over 33k words: ~11 GB each
])
def test_trials_per_gpu_of_the_paper_models(model, params_m, on_h200, on_16gb):
    spec, train = _paper(model)
    parts = trial_memory_bytes(spec, train, VOCAB[model])
    assert parts["parameters"] / BYTES_PER_PARAM / 1e6 == pytest.approx(params_m, abs=0.05)  # Table A1's counts
    assert parts["total"] == pytest.approx(sum(v for k, v in parts.items() if k != "total"))
    assert trials_per_gpu(spec, train, H200, vocab_size=VOCAB[model]) == on_h200
    assert trials_per_gpu(spec, train, GPU16, vocab_size=VOCAB[model]) == on_16gb
    assert trials_per_gpu(spec, train, None, vocab_size=VOCAB[model]) == 1  # memory unknown


def test_the_reasons_name_what_bound_the_choice():
    spec, train = _paper("stacked_lstm")
    h200 = resolve_gpus_per_trial(AUTO, 4, H200, spec, train, vocab_size=10_000, memory_source="NVIDIA H200")
    assert h200.gpus_per_trial == 0.25 and h200.trials_per_gpu == 4 and h200.warning is None
    assert h200.line().startswith("gpus_per_trial=auto → 0.25 (4 trials per GPU: stacked_lstm's throughput cap 4")
    assert "2.26x" in h200.reason and "141 GB (NVIDIA H200)" in h200.reason
    small = resolve_gpus_per_trial(AUTO, 1, GPU16, spec, train, vocab_size=10_000)
    assert small.gpus_per_trial == 0.5 and "2 fit in 16 GB, below stacked_lstm's throughput cap 4" in small.reason
    rhn = resolve_gpus_per_trial(AUTO, 1, 12e9, *_paper("rhn"), vocab_size=10_000)
    assert rhn.trials_per_gpu == 3 and rhn.gpus_per_trial == 0.3333 and 3 * rhn.gpus_per_trial <= 1  # Ray's precision


def test_a_model_too_large_for_the_gpu_gets_one_per_gpu_and_a_warning():
    spec, train = _paper("awd_lstm_mos")
    assert trials_per_gpu(spec, train, 8e9, vocab_size=33_278) == 1
    choice = resolve_gpus_per_trial(AUTO, 2, 8e9, spec, train, vocab_size=33_278)
    assert choice.gpus_per_trial == 1.0 and "does not fit in 8 GB" in choice.reason
    assert "awd_lstm_mos needs an estimated 11.0 GB per trial" in choice.warning and "out of memory" in choice.warning


def test_no_gpu_gives_zero_unknown_memory_one_per_gpu_and_numbers_pass_through():
    spec, train = _paper("stacked_lstm")
    none = resolve_gpus_per_trial(AUTO, 0, None, spec, train, vocab_size=10_000)
    assert none.gpus_per_trial == 0.0
    assert none.line().startswith("gpus_per_trial=auto → 0 (the Ray cluster has no GPU")
    unknown = resolve_gpus_per_trial(AUTO, 4, None, spec, train, vocab_size=10_000, memory_source="why")
    assert unknown.gpus_per_trial == 1.0 and "1 trial per GPU: GPU memory unknown (why)" in unknown.reason
    assert resolve_gpus_per_trial(0.5, 0, None, spec, train, vocab_size=10_000).gpus_per_trial == 0.5


def test_accelerator_types_map_to_the_smallest_known_memory():
    assert accelerator_memory(["H200"]) == (141e9, "accelerator_type H200 of the cluster's nodes")
    assert accelerator_memory(["H200", "T4", "H200"])[0] == 16e9
    assert accelerator_memory(["A100"])[0] == 40e9  # Ray names 40 and 80 GB alike: the smaller
    assert accelerator_memory(["Weird-GPU"]) == (None, "no GPU visible to the driver; accelerator_type Weird-GPU "
                                                       "not in the memory table")
    assert accelerator_memory([])[0] is None


def test_the_option_is_auto_or_a_number_and_auto_is_the_default(tmp_path, capsys):
    assert SearchConfig().gpus_per_trial == AUTO
    assert parse_gpus_per_trial(" Auto ") == AUTO and parse_gpus_per_trial("0.25") == 0.25
    with pytest.raises(LSHUsageError, match=r"gpus_per_trial='lots' is not allowed; use auto or a number >= 0"):
        SearchConfig(gpus_per_trial=parse_gpus_per_trial("lots"))
    assert main(["--gpus-per-trial", "lots", "--storage-path", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == ("lsh-tune: error: gpus_per_trial='lots' is not allowed; use auto or a "
                                               "number >= 0")
    cfg = SearchConfig(gpus_per_trial=0.25, gpus_per_trial_auto="4 trials per GPU: ...")
    assert SearchConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_auto_refuses_paper_on_a_local_instance_without_gpus_before_ray(tmp_path, capsys):
    """``auto`` will be 0 there, so ``check_compute`` refuses as for ``--gpus-per-trial 0``; explicit
    numbers keep their own refusal."""
    store = tmp_path / "runs"
    assert main(["--model", "rhn", "--preset", "paper", "--num-gpus", "0", "--storage-path", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lsh-tune: error: preset='paper' with gpus_per_trial=0: on CPU") and "--preset small" in err
    assert main(["--gpus-per-trial", "1", "--num-gpus", "0", "--storage-path", str(store)]) == 2
    assert "gpus_per_trial=1.0 but --num-gpus gives the local Ray instance 0 GPU(s)" in capsys.readouterr().err
    assert not store.exists()


def test_the_autoscalers_gpu_node_types_count_where_none_runs_yet(monkeypatch):
    """A CPU head whose GPU workers scale from 0 (cluster/gpu.yaml): the node types' GPUs and accelerator
    type, from the cluster config, not 0."""
    pytest.importorskip("ray")
    from ray._private import state as ray_state

    from lsh_tune.search.tune.tuner import _cluster_resources, _gpu_memory

    monkeypatch.setattr(ray_state.state, "get_max_resources_from_cluster_config",
                        lambda: {"CPU": 32, "GPU": 8, "accelerator_type:A10G": 8})
    seen = _cluster_resources({"CPU": 0.0})
    assert seen["GPU"] == 8 and "accelerator_type:A10G" in seen
    assert _cluster_resources({"CPU": 4.0, "GPU": 1.0}) == {"CPU": 4.0, "GPU": 1.0}  # GPUs up: what runs
    import torch

    if not torch.cuda.is_available():
        assert _gpu_memory(seen) == (24e9, "accelerator_type A10G of the cluster's nodes")
    monkeypatch.setattr(ray_state.state, "get_max_resources_from_cluster_config", lambda: None)
    assert _cluster_resources({"CPU": 2.0}) == {"CPU": 2.0}


@pytest.mark.ray
def test_auto_with_declared_gpus_of_unknown_memory_is_one_per_gpu_and_says_so(tmp_path, capsys):
    """``ray.init(num_gpus=4)`` on this GPU-less machine: 4 GPUs, no memory known → 1 per GPU, stated."""
    ray = pytest.importorskip("ray")
    import torch

    from lsh_tune.search.tune.tuner import resolve_gpus

    if torch.cuda.is_available():
        pytest.skip("the driver sees a GPU: its memory is known")
    cfg = SearchConfig(max_tokens=2000, storage_path=str(tmp_path), cpus_per_trial=1)
    ray.init(num_cpus=1, num_gpus=4, address="local", include_dashboard=False, log_to_driver=False,
             _temp_dir=f"/tmp/lshpack{os.getpid()}")
    try:
        resolved = resolve_gpus(cfg)
        assert resolve_gpus(resolved) is resolved  # a number (a resumed search's) stays as it is
    finally:
        ray.shutdown()
    assert resolved.gpus_per_trial == 1.0
    assert resolved.gpus_per_trial_auto.startswith("1 trial per GPU: GPU memory unknown (no GPU visible to the driver "
                                                   "and no accelerator_type on the cluster's nodes)")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lsh-tune:")]
    assert lines == [f"lsh-tune: gpus_per_trial=auto → 1 ({resolved.gpus_per_trial_auto})"]  # one line, the reason


@pytest.mark.ray
def test_a_bare_search_without_gpus_trains_on_cpu_saves_the_choice_and_resume_keeps_it(tiny_search):
    """The shared tiny search runs without ``--gpus-per-trial`` on a local Ray without GPUs: auto → 0,
    printed and saved; ``--resume`` (also with ``--gpus-per-trial auto``) keeps the saved number, an
    explicit other number contradicts it."""
    import torch

    from lsh_tune.cli import build_parser
    from lsh_tune.cli.search import checked_config
    from lsh_tune.search.candidate import read_epoch_log

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: auto packs trials on it")
    exp, run, _ = tiny_search
    saved = json.loads((exp / "lsh" / "search.json").read_text())
    assert saved["gpus_per_trial"] == 0 and saved["gpus_per_trial_auto"].startswith("the Ray cluster has no GPU")
    assert f"lsh-tune: gpus_per_trial=auto → 0 ({saved['gpus_per_trial_auto']})" in run.stderr.splitlines()
    assert {e["gpu_ids"] for e in read_epoch_log(exp)} == {""}  # no trial was given a GPU
    base = ["search", "--storage-path", str(exp.parent), "--name", exp.name, "--resume"]
    for extra in ([], ["--gpus-per-trial", "auto"]):
        cfg = checked_config(build_parser().parse_args(base + extra))
        assert cfg.gpus_per_trial == 0 and cfg.gpus_per_trial_auto == saved["gpus_per_trial_auto"]
    with pytest.raises(LSHUsageError, match=r"--gpus-per-trial 0.5 \(saved: 0.0\)"):
        checked_config(build_parser().parse_args(base + ["--gpus-per-trial", "0.5"]))
