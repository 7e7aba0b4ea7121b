"""The chosen model as a file anyone can load (``best_model.pt``, :func:`lsh_tune.search.run.outputs.export_best`):
torch alone reads it, every masked weight a sparse CSR tensor whose stored pattern is its mask; it is smaller
than the dense state dict; ``SearchResult.load_best_model()`` gives the test perplexity measured at search time;
``lsh-tune ls --checkpoint`` reads it from an S3 bucket.

The model is a real search candidate (tiny stacked LSTM, sparsity 0.67, ER init) built by the search's own
:func:`build_candidate`, trained 2 epochs on the first 3000 tokens of each PTB split (one prune-and-regrow
between them) and mirrored as the trainable mirrors it; its test loss is measured as the trainable measures a
finalist's (``trainer.evaluate("test")``) and handed to :func:`export_best` as the search does.
"""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from helpers import REPO, run_cli
from lsh_tune.api import SearchResult
from lsh_tune.errors import LSHUsageError
from lsh_tune.lyapunov import load_checkpoint_model
from lsh_tune.models import TrainSpec
from lsh_tune.search.candidate import build_candidate, save_state, trial_settings
from lsh_tune.search.config import SearchConfig
from lsh_tune.search.layout import BEST_MODEL, BEST_MODEL_SPEC
from lsh_tune.search.run.outputs import export_best, load_best_model
from lsh_tune.search.run.reference import search_corpus
from lsh_tune.sparse import SPARSE_CSR_FORMAT, csr_from_mask, dense_state_dict
from lsh_tune.storage import Storage
from lsh_tune.train import Trainer, perplexity

SPARSITY = 0.67
CONFIG = {"sparse_init": "ER", "death": "magnitude", "redistribution": "none", "growth": "random", "death_rate": 0.5}
CID = "c003"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One candidate trained, mirrored and exported: its experiment, what it measured, its masks."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the trial that measured it (cpus_per_trial=1); also: bit-identical re-evaluation
    try:
        cfg = SearchConfig(storage_path=str(tmp_path_factory.mktemp("export")), name="exp", model="stacked_lstm",
                           preset="tiny", corpus="ptb", max_tokens=3000, sparsity=SPARSITY, pool=4, rounds_every=1,
                           final_k=2, max_epochs=2, seed=0, gpus_per_trial=0)
        corpus = search_corpus(cfg)
        trainer, hook = build_candidate(trial_settings(cfg, tuple(CONFIG)), {"cid": CID, **CONFIG}, corpus)
        for _ in range(cfg.max_epochs):
            trainer.train_epoch()
        test_loss = trainer.evaluate("test")
        save_state(trainer, cfg.experiment(), CID, {"ls_history": []})
        metrics = {"test_loss": test_loss, "test_ppl": perplexity(test_loss)}  # as the trainable reports them
        meta = export_best(cfg, CID, CONFIG, corpus, metrics=metrics)
        with trainer.evaluation_weights():
            weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        dense = io.BytesIO()
        torch.save(weights, dense)
        yield SimpleNamespace(cfg=cfg, corpus=corpus, exp=cfg.experiment_dir, meta=meta, test_loss=test_loss,
                              weights=weights, masks={k: m.clone() for k, m in hook.masking.masks.items()},
                              dense_bytes=len(dense.getvalue()), model_type=type(trainer.model))
    finally:
        torch.set_num_threads(before)


#: Run by ``python -I -S`` from an empty directory with torch's site-packages appended to ``sys.path`` by hand:
#: no ``.pth`` file runs, so lsh_tune's editable install is not importable, only torch is. It runs the README's
#: snippet (argv[2]) on the file (argv[3]) and reports what it finds (argv[4]).
_TORCH_ONLY = r"""
import json, math, sys
sys.path.append(sys.argv[1])
try:
    import lsh_tune
    sys.exit("lsh_tune is importable here")
except ModuleNotFoundError:
    pass
import warnings
warnings.simplefilter("ignore")  # torch: "Sparse CSR tensor support is in beta state"
import torch
snippet, path, out = open(sys.argv[2]).read(), sys.argv[3], sys.argv[4]
ns = {}
exec(snippet.replace("runs/demo/best_model.pt", path), ns)
ckpt, dense = ns["ckpt"], ns["state_dict"]
found = {}
for key, v in ckpt["state_dict"].items():
    if v.layout == torch.strided:
        continue
    assert v.layout == torch.sparse_csr, (key, v.layout)
    assert v.crow_indices().dtype == v.col_indices().dtype == torch.int32, key
    nnz, numel = v.values().numel(), math.prod(v.shape)
    found[key] = {"nnz": nnz, "numel": numel, "density": nnz / numel, "nonzero": int(torch.count_nonzero(dense[key]))}
torch.save(dense, out + ".pt")
json.dump({"found": found, "format": ckpt["format"], "spec": ckpt["model_spec"], "vocab": ckpt["vocab_size"],
           "sys_modules_lsh": sorted(m for m in sys.modules if m.startswith("lsh_tune"))}, open(out, "w"))
"""


def _readme_snippet() -> str:
    """The README's ``python`` block that reads ``best_model.pt`` with torch alone."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
    (snippet,) = [b for b in blocks if "weights_only=True" in b]
    assert "runs/demo/best_model.pt" in snippet and "lsh_tune" not in snippet.replace("no lsh_tune", "")
    return snippet


def test_torch_alone_reads_every_masked_weight_at_its_mask_density(exported, tmp_path):
    site = str(Path(torch.__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out, snippet = tmp_path / "found.json", tmp_path / "snippet.py"
    snippet.write_text(_readme_snippet(), encoding="utf-8")
    run = subprocess.run([sys.executable, "-I", "-S", "-c", _TORCH_ONLY, site, str(snippet),
                          str(exported.exp / BEST_MODEL), str(out)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["format"] == SPARSE_CSR_FORMAT and got["sys_modules_lsh"] == []
    assert got["spec"]["model"] == "stacked_lstm" and got["vocab"] == len(exported.corpus.vocab)
    found = got["found"]
    assert set(found) == set(exported.masks)  # untied stacked LSTM: one key per masked parameter
    for key, mask in exported.masks.items():
        active = int(mask.sum())
        assert found[key]["nnz"] == active and found[key]["numel"] == mask.numel(), key  # exact counts
        assert found[key]["density"] == active / mask.numel() == exported.meta["tensors"][key]["density"], key
        # an active weight may be exactly 0 (regrown, or an embedding row no training token reached)
        assert found[key]["nonzero"] <= active, key
    assert sum(f["nonzero"] for f in found.values()) < sum(f["nnz"] for f in found.values())  # such zeros exist here
    # overall: K = round(d * N) active weights (lsh_tune.sparse.target_count), so |K/N - d| <= 0.5/N
    total = sum(f["numel"] for f in found.values())
    assert abs(sum(f["nnz"] for f in found.values()) / total - (1 - SPARSITY)) <= 0.5 / total
    # the README's snippet gives back exactly the exported weights: masked ones with every pruned entry 0
    dense = torch.load(str(out) + ".pt", weights_only=True)
    assert set(dense) == set(exported.weights)
    for key, w in exported.weights.items():
        expected = w * exported.masks[key] if key in exported.masks else w
        assert torch.equal(dense[key], expected), key


def test_load_best_model_gives_the_test_perplexity_of_the_search(exported, one_torch_thread):
    result = SearchResult(experiment_dir=exported.exp, best={"cid": CID, "config": CONFIG}, rounds=())
    model = result.load_best_model()
    assert type(model) is exported.model_type and not model.training
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    params = dict(model.named_parameters())
    for key, mask in exported.masks.items():
        assert not params[key][~mask].any(), key  # pruned weights exactly zero
        assert torch.equal(params[key][mask], exported.weights[key][mask]), key
    trainer = Trainer(model, exported.corpus, TrainSpec(**exported.meta["train_spec"]), device="cpu")
    # bit-identical: the same weights (as floats), the same test tokens, kernels and thread count
    assert trainer.evaluate("test") == exported.test_loss
    assert exported.meta["metrics"]["test_ppl"] == perplexity(exported.test_loss)
    with pytest.raises(LSHUsageError, match="chose no model"):
        SearchResult(experiment_dir=exported.exp, best=None, rounds=()).load_best_model()
    with pytest.raises(LSHUsageError, match="does not exist"):
        load_best_model(exported.exp / "nothing.pt")


def test_the_file_is_smaller_than_the_dense_state_dict_by_the_csr_arithmetic(exported):
    size = (exported.exp / BEST_MODEL).stat().st_size
    assert size < exported.dense_bytes
    # float32 values and int32 column indices per stored entry, int32 row pointers; dense tensors 4 bytes/entry
    stored = sum(8 * t["nnz"] + 4 * (t["shape"][0] + 1) for t in exported.meta["tensors"].values())
    plain = sum(4 * w.numel() for k, w in exported.weights.items() if k not in exported.masks)
    # the rest is torch.save's zip and pickle framing: a zip record (~0.1 KiB, 64-byte aligned) per tensor
    # storage, and the pickled metadata; 9.0 KiB for this file when written
    assert 0 < size - (stored + plain) < 16 * 1024
    print(f"best_model.pt {size} bytes, dense state dict {exported.dense_bytes} bytes "
          f"({size / exported.dense_bytes:.3f}) at sparsity {SPARSITY}")
    spec = json.loads((exported.exp / BEST_MODEL_SPEC).read_text())
    assert spec == exported.meta and spec["state_file"] == BEST_MODEL and spec["cid"] == CID
    assert spec["config"] == CONFIG and spec["tokens"]["test"] == exported.corpus.test.numel()


@pytest.mark.parametrize("density", [0.1, 0.33, 0.6])
def test_csr_bytes_follow_the_documented_formula(density):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(300, 70, generator=gen)
    mask = torch.rand(300, 70, generator=gen) < density
    csr = csr_from_mask(w, mask)
    nnz = int(mask.sum())
    parts = (csr.values(), csr.col_indices(), csr.crow_indices())
    assert [p.untyped_storage().nbytes() for p in parts] == [4 * nnz, 4 * nnz, 4 * 301]
    smaller = 8 * nnz + 4 * 301 < 4 * w.numel()
    assert smaller == (density < 0.5)  # break-even at density 0.5 (sparsity 0.5) up to the row pointers
    back, masks = dense_state_dict({"w": csr}, {"w": {"shape": [300, 70], "parameter": "w"}})
    assert torch.equal(back["w"], w * mask) and torch.equal(masks["w"], mask)


def test_a_weight_with_more_dimensions_is_stored_as_its_2d_view():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(4, 3, 5, generator=gen)
    mask = torch.rand(4, 3, 5, generator=gen) < 0.3
    csr = csr_from_mask(w, mask)
    assert tuple(csr.shape) == (4, 15) and csr.values().numel() == int(mask.sum())
    back, masks = dense_state_dict({"w": csr}, {"w": {"shape": [4, 3, 5], "parameter": "p"}})
    assert torch.equal(back["w"], w * mask) and torch.equal(masks["p"], mask)
    with pytest.raises(LSHUsageError, match=r"'w': CSR shape \(4, 15\) does not fit the recorded shape \[4, 5, 4\]"):
        dense_state_dict({"w": csr}, {"w": {"shape": [4, 5, 4], "parameter": "p"}})


def test_bad_inputs_name_what_is_wrong(exported, tmp_path):
    with pytest.raises(LSHUsageError, match=r"mask shape \(3, 4\) does not match weight shape \(4, 3\)"):
        csr_from_mask(torch.zeros(4, 3), torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(LSHUsageError, match=r">= 2 dimensions; got shape \(5,\)"):
        csr_from_mask(torch.zeros(5), torch.ones(5, dtype=torch.bool))
    ckpt = torch.load(exported.exp / BEST_MODEL, weights_only=True)
    broken = dict(ckpt, tensors={})
    torch.save(broken, tmp_path / "no_tensors.pt")
    with pytest.raises(LSHUsageError, match="'encoder.weight' is a sparse CSR tensor without its entry"):
        load_checkpoint_model(tmp_path / "no_tensors.pt")
    torch.save(dict(ckpt, format="lsh_tune.sparse_csr_state_dict/9"), tmp_path / "future.pt")
    with pytest.raises(LSHUsageError, match="format='lsh_tune.sparse_csr_state_dict/9'"):
        load_checkpoint_model(tmp_path / "future.pt")


def test_a_former_sparse_state_dict_file_still_loads(exported, tmp_path):
    """Format ``lsh_tune.sparse_state_dict/1`` (dense weights plus masks), as the search wrote it before."""
    old = {"format": "lsh_tune.sparse_state_dict/1", "model_spec": exported.meta["model_spec"],
           "train_spec": exported.meta["train_spec"], "model": exported.weights, "masks": exported.masks,
           "config": CONFIG, "cid": CID, "corpus": "ptb", "vocab_size": exported.meta["vocab_size"], "epoch": 2}
    torch.save(old, tmp_path / "old.pt")
    model = load_best_model(tmp_path / "old.pt")
    new = load_best_model(exported.exp / BEST_MODEL)
    assert all(torch.equal(v, new.state_dict()[k]) for k, v in model.state_dict().items())


def test_ls_and_load_best_model_read_the_file_from_a_bucket(exported, s3, tmp_path):
    exp_uri = s3.uri("runs/exp")
    store = Storage(exp_uri)
    store.upload(exported.exp / BEST_MODEL, BEST_MODEL)
    result = SearchResult(experiment_dir=exp_uri, best={"cid": CID, "config": CONFIG}, rounds=())
    assert result.best_model.startswith("s3://") and "endpoint_override" in result.best_model
    from_bucket = result.load_best_model()
    local = load_best_model(exported.exp / BEST_MODEL)
    assert all(torch.equal(v, local.state_dict()[k]) for k, v in from_bucket.state_dict().items())
    with pytest.raises(LSHUsageError, match="does not exist"):
        load_best_model(s3.uri("runs/exp/missing.pt"))

    argv = ("ls", "-k", "2", "--steps", "5", "--warmup", "0", "--json")
    env = dict(os.environ, **s3.env(), OMP_NUM_THREADS="1")
    remote = run_cli(*argv, "--checkpoint", result.best_model, env=env, timeout=300)
    assert remote.returncode == 0, remote.stderr[-3000:]
    here = run_cli(*argv, "--checkpoint", str(exported.exp / BEST_MODEL), env=env, timeout=300)
    assert here.returncode == 0, here.stderr[-3000:]
    remote_out, here_out = json.loads(remote.stdout), json.loads(here.stdout)
    assert remote_out["source"] == {"checkpoint": result.best_model} and remote_out["n"] == 128
    # the same weights through the same computation on one thread each: the same exponents, bit for bit
    assert remote_out["exponents"] == here_out["exponents"] and len(remote_out["exponents"]) == 128


@pytest.mark.ray
def test_the_searchs_chosen_model_gives_the_test_perplexity_it_recorded(tiny_search, one_torch_thread):
    """The shared real tiny search (``conftest.TINY_SEARCH``): its ``best_model.pt``, loaded through the API,
    scores on the search's test tokens the perplexity its finalist's trial reported (``best.json``)."""
    exp = tiny_search[0]
    result = SearchResult.load(exp)
    spec = json.loads((exp / BEST_MODEL_SPEC).read_text())
    assert spec["cid"] == result.best["cid"] and spec["metrics"]["test_ppl"] == result.best["test_ppl"]
    assert abs(spec["density"] - (1 - spec["sparsity"])) <= 0.5 / sum(t["numel"] for t in spec["tensors"].values())
    corpus = search_corpus(SearchConfig.load(exp))
    assert spec["tokens"]["test"] == corpus.test.numel()
    trainer = Trainer(result.load_best_model(), corpus, TrainSpec(**spec["train_spec"]), device="cpu")
    # bit-identical: the trial evaluated the same floats on the same tokens with one thread and the same kernels
    # (cpus_per_trial=1), and best.json keeps the float exactly (repr round-trips)
    assert perplexity(trainer.evaluate("test")) == result.best["test_ppl"]
