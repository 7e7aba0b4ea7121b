"""Search events: the event log, results → events (SearchProgress), the live console view, Ray's quiet
settings, and a real tiny search's terminal output and events.jsonl."""
from __future__ import annotations

import io
import json
import os

import pytest

from lsh_tune.errors import LSHUsageError
from lsh_tune.search import PoolConfig, SearchLedger
from lsh_tune.search.views.console import ConsoleView, format_duration
from lsh_tune.search.views.events import (EVENTS_FILE, FLUSH_AT_ONCE, EventLog, TornEventsWarning, read_event_file,
                                    read_events)
from lsh_tune.storage import Storage
from lsh_tune.search.views.progress import SearchProgress, config_label
from lsh_tune.search.views.session import trial_slots
from lsh_tune.space import DEFAULT_SPACE


def test_event_log_persists_every_event_and_reopens(tmp_path):
    seen = []
    log = EventLog(tmp_path, [seen.append], clock=lambda: 12.5)
    log.emit("trial_error", cid="c001", error="boom")
    log.emit("round", round=0, ranking=[("c000", float("inf"))])
    assert [e["kind"] for e in seen] == ["trial_error", "round"] and seen[0]["time"] == 12.5
    lines = (tmp_path / EVENTS_FILE).read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["ranking"] == [["c000", float("inf")]]
    again = EventLog(tmp_path)  # a resumed search keeps what happened before
    again.emit("result", best=None, elapsed_s=1.0)
    assert [e["kind"] for e in read_events(tmp_path)] == ["trial_error", "round", "result"]
    assert [e["cid"] for e in read_events(tmp_path, "trial_error")] == ["c001"]
    with pytest.raises(LSHUsageError, match="kind='nope'"):
        log.emit("nope")
    (tmp_path / EVENTS_FILE).write_text("{not json\n")
    with pytest.raises(LSHUsageError, match="line 1 is not JSON"):
        read_events(tmp_path)


class _CountingStorage(Storage):
    """A local root that counts the bytes written through the storage layer (every writer ends in
    ``write_with`` or ``append_bytes``); ``object_store=True`` makes it behave as one (no append)."""

    def __init__(self, root, object_store: bool = False) -> None:
        super().__init__(root)
        self.object_store = object_store
        self.written = 0
        self.writes = 0

    @property
    def is_local(self) -> bool:
        return not self.object_store

    def write_with(self, rel, write):
        counting = self

        class Counted:
            def __init__(self, f):
                self.f = f

            def write(self, data):
                counting.written += len(data)
                return self.f.write(data)

        self.writes += 1
        super().write_with(rel, lambda f: write(Counted(f)))

    def append_bytes(self, rel, data):
        assert not self.object_store, "an object store cannot append"
        self.written += len(data)
        self.writes += 1
        super().append_bytes(rel, data)


N_EVENTS = 300


@pytest.mark.parametrize("object_store", [False, True], ids=["local", "object-store"])
def test_n_events_cost_bytes_linear_in_n_not_a_rewrite_each(tmp_path, object_store):
    """Writing N events writes each of their bytes once (a rewrite per event would write ~N/2 times the
    file); on an object store, with no time passing and no event that uploads at once, one upload at
    close holds them all, and readers see them."""
    store = _CountingStorage(tmp_path, object_store=object_store)
    log = EventLog(store, clock=lambda: 5.0)
    for i in range(N_EVENTS):
        log.emit("epoch", cid=f"c{i:03d}", epoch=1, val_ppl=100.0 + i)
    log.close()
    size = (tmp_path / EVENTS_FILE).stat().st_size
    assert store.written == size, (store.written, size)  # every byte once: linear in N
    assert store.writes == (1 if object_store else N_EVENTS)
    assert [e["cid"] for e in read_events(tmp_path)] == [f"c{i:03d}" for i in range(N_EVENTS)]


def test_object_store_uploads_by_time_and_at_once_for_the_events_read_while_it_runs(tmp_path):
    clock = _Clock()
    store = _CountingStorage(tmp_path, object_store=True)
    log = EventLog(store, clock=clock, flush_every_s=30.0)
    log.emit("epoch", cid="c000", epoch=1)
    assert not (tmp_path / EVENTS_FILE).exists()              # batched
    clock.t += 30.0
    log.emit("epoch", cid="c001", epoch=1)                     # the interval passed: uploaded
    assert len(read_events(tmp_path)) == 2 and store.writes == 1
    log.emit("epoch", cid="c002", epoch=1)
    assert "round" in FLUSH_AT_ONCE
    log.emit("round", round=0, ranking=[])                     # the TensorBoard rebuild reads it: at once
    assert [e["kind"] for e in read_events(tmp_path)] == ["epoch"] * 3 + ["round"] and store.writes == 2
    log.close()
    assert store.writes == 2                                   # nothing left to upload
    again = EventLog(_CountingStorage(tmp_path, object_store=True), clock=clock)  # a resume keeps them
    again.emit("result", best=None, elapsed_s=1.0)
    assert [e["kind"] for e in read_events(tmp_path)][-2:] == ["round", "result"]


def test_the_event_log_on_a_real_object_store(s3):
    exp = Storage(s3.uri("events/exp"))
    log = EventLog(exp, clock=lambda: 1.0)
    log.emit("search_start", name="x")
    log.emit("epoch", cid="c000", epoch=1)
    assert [e["kind"] for e in read_events(s3.uri("events/exp"))] == ["search_start"]  # epoch: not yet
    log.close()
    assert [e["kind"] for e in read_events(s3.uri("events/exp"))] == ["search_start", "epoch"]
    assert exp.listdir() == [EVENTS_FILE]  # no temporary objects left
    with pytest.raises(LSHUsageError, match="an object store has no append"):
        exp.append_bytes(EVENTS_FILE, b"{}\n")


def test_a_torn_last_line_is_skipped_reported_and_cut_off_by_the_next_writer(tmp_path):
    log = EventLog(tmp_path, clock=lambda: 1.0)
    log.emit("epoch", cid="c000", epoch=1)
    log.emit("epoch", cid="c001", epoch=1)
    torn = b'{"kind": "epoch", "time": 1.0, "cid": "c0'  # an append cut short by a kill
    with open(tmp_path / EVENTS_FILE, "ab") as f:
        f.write(torn)
    read = read_event_file(tmp_path)
    assert [e["cid"] for e in read.events] == ["c000", "c001"] and read.torn_bytes == len(torn)
    assert str(tmp_path / EVENTS_FILE) in read.warning and f"{len(torn)} bytes" in read.warning
    with pytest.warns(TornEventsWarning, match="skipped a torn last line"):
        assert [e["cid"] for e in read_events(tmp_path, "epoch")] == ["c000", "c001"]
    again = EventLog(tmp_path, clock=lambda: 2.0)  # a resumed driver: cuts the torn tail off, then appends
    again.emit("epoch", cid="c002", epoch=1)
    lines = (tmp_path / EVENTS_FILE).read_bytes().split(b"\n")
    assert lines[-1] == b"" and [json.loads(x)["cid"] for x in lines[:-1]] == ["c000", "c001", "c002"]
    assert read_event_file(tmp_path).torn_bytes == 0
    # a complete last event without its newline is an event; the next append starts a new line
    (tmp_path / EVENTS_FILE).write_bytes(b'{"kind": "epoch", "cid": "c000"}')
    assert read_event_file(tmp_path).torn_bytes == 0 and len(read_events(tmp_path)) == 1
    EventLog(tmp_path).emit("epoch", cid="c001")
    assert [e["cid"] for e in read_events(tmp_path)] == ["c000", "c001"]
    # only the last line may be torn: a bad line before it is a damaged file
    (tmp_path / EVENTS_FILE).write_bytes(b'{"kind": "ep\n{"kind": "epoch"}\n')
    with pytest.raises(LSHUsageError, match="line 1 is not JSON"):
        read_events(tmp_path)


def test_report_shows_a_torn_event_line_as_one_warning(tmp_path, capsys):
    from lsh_tune.cli import main
    from lsh_tune.search.config import SearchConfig

    cfg = SearchConfig(hpo="random", metric="loss", pool=4, rounds_every=1, max_epochs=3, gpus_per_trial=0,
                       max_tokens=2000, storage_path=str(tmp_path), name="exp")
    cfg.save()
    SearchLedger.create(cfg.pool_config(), cfg.hpo, cfg.space, cfg.experiment())
    SearchLedger.forget(cfg.experiment())
    log = EventLog(cfg.experiment(), clock=lambda: 1.0)
    log.emit("search_start", name="exp", unigram={"valid": 700.0, "test": 650.0}, slots=1)
    with open(tmp_path / "exp" / EVENTS_FILE, "ab") as f:
        f.write(b'{"kind": "epoch", "ti')
    assert main(["report", str(tmp_path / "exp"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["unigram"] == {"valid": 700.0, "test": 650.0}
    assert err.count("\n") == 1 and err.startswith("lsh-tune: warning: ") and "skipped a torn last line" in err


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _pool_progress(tmp_path):
    cfg = SearchLedger.pool_config_for("random", pool_size=4, rounds_every=1, max_epochs=3, final_k=2, metric="loss")
    ledger = SearchLedger.create(cfg, "random", DEFAULT_SPACE, None)
    clock = _Clock()
    return ledger, SearchProgress(EventLog(tmp_path, clock=clock), lambda: ledger, slots=2, clock=clock), clock


def test_progress_turns_results_and_decided_rounds_into_events(tmp_path):
    ledger, progress, clock = _pool_progress(tmp_path)
    assert isinstance(ledger.pool.config, PoolConfig) and progress.eta_s() is None
    values = {"c000": 0.5, "c001": 0.1, "c002": 0.9, "c003": 0.3}
    for cid, v in values.items():
        clock.t += 10.0
        result = {"cid": cid, "epoch": 1, "lsh_boundary": True, "val_ppl": 100 * (1 + v), "val_loss": v,
                  "ls_distance_own_fit": 2 * v, "epoch_time_s": 9.0}
        ledger.on_boundary(cid, 1, v, {"val_ppl": result["val_ppl"]})
        progress.on_result(result)
    progress.on_result({"cid": "c001", "epoch": 1, "lsh_replay": True, "val_ppl": 1.0})  # replays are not epochs
    epochs = progress.log.of_kind("epoch")
    assert [e["cid"] for e in epochs] == list(values) and epochs[0]["ls_distance_own_fit"] == 1.0
    (rnd,) = progress.log.of_kind("round")
    assert rnd["ranking"] == [["c001", 0.1], ["c003", 0.3], ["c000", 0.5], ["c002", 0.9]]
    assert [r["cid"] for r in rnd["removed"]] == ["c002", "c000"] and rnd["refilled"] == [] and rnd["done"]
    assert rnd["removed"][0]["config"] == ledger.pool.candidates["c002"].config
    assert rnd["best"] == {"cid": "c001", "value": 0.1, "val_ppl": pytest.approx(110.0), "epoch": 1}
    # 4 epochs in 40 s on 2 slots: 20 s per epoch-slot; the 2 finalists need 2 more epochs each, side by side
    assert rnd["elapsed_s"] == 40.0 and rnd["eta_s"] == pytest.approx(2 * 20.0)
    progress.sync_rounds()
    assert len(progress.log.of_kind("round")) == 1  # each round once
    progress.on_result({"cid": "c001", "epoch": 3, "lsh_final": True, "val_ppl": 80.0, "test_ppl": 78.0,
                        "density": 0.33})
    assert progress.log.of_kind("finalist_done")[0]["test_ppl"] == 78.0
    assert progress.log.of_kind("epoch")[-1]["phase"] == "final"


def test_console_view_prints_one_block_per_round(tmp_path):
    buf = io.StringIO()
    from rich.console import Console

    view = ConsoleView(Console(file=buf, width=200, soft_wrap=True))
    with view:
        view({"kind": "search_start", "name": "x", "pool": 4, "rounds_every": 1, "final_k": 2, "max_epochs": 3,
              "metric": "ls", "plan": [[4, 2, 0]], "slots": 2, "unigram": {"valid": 700.0, "test": 650.0}})
        view({"kind": "reference_epoch", "epoch": 1, "epochs": 2, "val_ppl": 900.0})
        view({"kind": "round", "round": 0, "rounds": 1, "pool": 4, "ranking": [["c001", 0.1], ["c000", 2.0]],
              "removed": [{"cid": "c000", "config": {"sparse_init": "ER", "death_rate": 0.5}}], "refilled": [],
              "generator": "tpe", "best": {"cid": "c001", "value": 0.1, "val_ppl": 450.0}, "elapsed_s": 75.0,
              "eta_s": 3700.0})
        view({"kind": "finalist_done", "cid": "c001", "val_ppl": 400.0, "test_ppl": 390.0, "density": 0.33})
    text = buf.getvalue()
    assert "round 1/1: pool 4, removed 1, refilled 0 · best c001 (LS distance 0.1, val ppl 450.0)" in text
    assert "1m15s elapsed, ETA 1h01m" in text and "removed  c000 ER/0.5" in text
    assert "test ppl 390.0 (0.60 × unigram)" in text and "unigram perplexity of these tokens: valid 700.0" in text
    assert format_duration(None) == "?" and format_duration(59.6) == "1m00s"
    assert config_label({"a": "ER", "b": 0.7}) == "ER/0.7"


def test_ray_output_switches(monkeypatch):
    pytest.importorskip("ray")
    from lsh_tune.search.tune.ray_output import quiet_tune, ray_init_kwargs, tune_verbosity

    assert [tune_verbosity(v) for v in (0, 1, 2, 3)] == [0, 0, 1, 2]
    assert ray_init_kwargs(2) == {} and ray_init_kwargs(1)["logging_level"] == 30
    for var in ("RAY_AIR_NEW_OUTPUT", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"):
        monkeypatch.delenv(var, raising=False)
    quiet_tune(2)
    assert "RAY_AIR_NEW_OUTPUT" not in os.environ
    quiet_tune(1)
    assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"


def test_trial_slots():
    class Cfg:
        cpus_per_trial, gpus_per_trial = 1.0, 0.0

    assert trial_slots(Cfg, {"CPU": 2.0}) == 2 and trial_slots(Cfg, {"CPU": 0.5}) == 1
    Cfg.gpus_per_trial = 0.5
    assert trial_slots(Cfg, {"CPU": 8.0, "GPU": 1.0}) == 2


@pytest.mark.ray
def test_a_real_search_shows_the_search_not_ray(tiny_search):
    exp, run, wall = tiny_search
    out = run.stdout + run.stderr
    for chatter in ("Checkpoint successfully created", "snapshotting", "Trial status", "Configuration for experiment",
                    "Restored on", "Started a local Ray instance"):
        assert chatter not in out
    lines = out.splitlines()
    assert len(lines) < 60, out
    state = json.loads((exp / "lsh" / "state.json").read_text())
    rounds = state["pool"]["rounds"]
    assert sum(line.startswith("round ") for line in run.stderr.splitlines()) == len(rounds) == 2
    events = read_events(exp)
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "search_start" and kinds[-1] == "result"
    assert {"reference_epoch", "reference_done", "epoch", "round", "finalist_done"} <= set(kinds)
    for event, decided in zip(read_events(exp, "round"), rounds):
        assert event["ranking"] == [list(x) for x in decided["ranking"]]
        assert [r["cid"] for r in event["removed"]] == decided["removed"]
        assert [r["cid"] for r in event["refilled"]] == decided["generated"]
    best = json.loads((exp / "best.json").read_text())["best"]
    assert read_events(exp, "result")[0]["best"]["cid"] == best["cid"]
    assert f"chosen {best['cid']}" in run.stderr and "tensorboard --logdir" in run.stdout
    print(f"tiny search: {wall:.0f} s, {len(lines)} lines of output")


def test_a_resumed_search_emits_each_round_once(tmp_path):
    ledger, progress, clock = _pool_progress(tmp_path)
    for cid, v in {"c000": 0.5, "c001": 0.1, "c002": 0.9, "c003": 0.3}.items():
        ledger.on_boundary(cid, 1, v)
    progress.sync_rounds()
    assert len(read_events(tmp_path, "round")) == 1
    # the driver restarts: a new log and progress over the same experiment and (restored) ledger
    again = SearchProgress(EventLog(tmp_path, clock=clock), lambda: ledger, slots=2, clock=clock)
    again.start(name="x")
    again.sync_rounds()
    assert len(read_events(tmp_path, "round")) == 1 and read_events(tmp_path, "search_start")[0]["resumed"]
