"""lsh_tune.storage: one filesystem layer over pyarrow.fs, local and on a real S3-compatible server."""
from __future__ import annotations

import math
import os

import pytest

from lsh_tune.errors import LSHUsageError
from lsh_tune.storage import Storage

from s3_server import start_s3_server


@pytest.fixture(scope="module")
def s3():
    server = start_s3_server()
    yield server
    server.stop()


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return Storage(str(tmp_path / "root"))
    server = request.getfixturevalue("s3")
    return Storage(server.uri(f"t/{request.node.name.replace('[', '-').rstrip(']')}"))


def test_round_trip_listing_and_delete(storage):
    assert not storage.exists("lsh/state.json")
    storage.write_json("lsh/state.json", {"round": 1, "inf": -math.inf})
    storage.write_text("candidates/c000/state.json", '{"epoch": 3}')
    storage.write_bytes("candidates/c001/state.pt", b"\x00\x01" * 1000)
    assert storage.read_json("lsh/state.json") == {"round": 1, "inf": -math.inf}
    assert storage.read_bytes("candidates/c001/state.pt") == b"\x00\x01" * 1000
    assert storage.listdir("candidates", recursive=True) == ["c000/state.json", "c001/state.pt"]
    storage.write_json("lsh/state.json", {"round": 2})        # replace
    assert storage.read_json("lsh/state.json") == {"round": 2}
    assert storage.listdir("lsh") == ["state.json"]            # no temporary left behind
    storage.delete("candidates")
    assert storage.listdir("candidates", recursive=True) == []
    with pytest.raises(FileNotFoundError, match="candidates/c000/state.json"):
        storage.read_text("candidates/c000/state.json")


def test_child_and_upload_download(storage, tmp_path):
    exp = storage.child("exp1")
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 * 2**20))  # several MB: a multipart upload on S3
    exp.upload(src, "best_model.pt")
    assert storage.read_bytes("exp1/best_model.pt") == src.read_bytes()
    out = exp.download("best_model.pt", tmp_path / "back.bin")
    assert out.read_bytes() == src.read_bytes()
    assert exp.uri_of("best_model.pt").endswith("exp1/best_model.pt")


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "a//b", "./a"])
def test_names_cannot_escape_the_root(storage, bad):
    with pytest.raises(LSHUsageError, match="escape"):
        storage.write_text(bad, "x")


def test_failed_write_keeps_the_previous_version(storage):
    """A write that dies half-way (disk full, a lost connection) leaves the old version and no temporary."""
    storage.write_text("f.txt", "old")
    if storage.is_local:
        from lsh_tune.storage import atomic_write

        def half_then_full(f):
            f.write(b"ne")
            raise OSError(28, "No space left on device")

        with pytest.raises(OSError, match="No space"):
            atomic_write(storage.local_path("f.txt"), half_then_full)
    else:
        class LostBeforeCommit:  # the upload is complete but the move onto the key fails
            def __init__(self, fs):
                self._fs = fs

            def __getattr__(self, name):
                return getattr(self._fs, name)

            def move(self, src, dst):
                raise OSError("connection reset")

        storage.fs = LostBeforeCommit(storage.fs)
        with pytest.raises(OSError, match="connection reset"):
            storage.write_text("f.txt", "new")
    assert storage.read_text("f.txt") == "old"
    import pyarrow.fs as pafs

    raw = storage.fs.get_file_info(pafs.FileSelector(storage.root, recursive=True))
    assert [i.path.rsplit("/", 1)[-1] for i in raw] == ["f.txt"]  # no temporary left behind


def test_local_paths_and_uri_errors(tmp_path):
    s = Storage(f"file://{tmp_path}")
    assert s.is_local and s.local_path("a/b") == tmp_path / "a" / "b"
    assert Storage("~").local_root == Storage(os.path.expanduser("~")).local_root
    with pytest.raises(LSHUsageError, match="nosuch://bucket"):
        Storage("nosuch://bucket/x")
    with pytest.raises(LSHUsageError, match="empty"):
        Storage("")


def test_storage_pickles_to_the_same_root(storage):
    import pickle

    storage.write_text("p.txt", "x")
    back = pickle.loads(pickle.dumps(storage))
    assert back.read_text("p.txt") == "x" and back.uri == storage.uri


def test_streamed_writes_and_local_file(storage, tmp_path):
    """``write_with`` streams (torch.save writes straight into it); ``local_file`` hands a local path."""
    import torch

    state = {"w": torch.arange(10_000, dtype=torch.float32)}
    storage.write_with("cand/state.pt", lambda f: torch.save(state, f))
    with storage.local_file("cand/state.pt") as p:
        assert p.is_file()
        assert torch.equal(torch.load(p)["w"], state["w"])
        local_copy = p
    assert local_copy.exists() == storage.is_local  # a download is removed after the block
    with pytest.raises(FileNotFoundError, match="cand/absent.pt"):
        with storage.local_file("cand/absent.pt"):
            pass
    with pytest.raises(FileNotFoundError, match="cand/absent.pt"):
        storage.download("cand/absent.pt", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_records_from_many_writers_all_come_back_in_order(storage):
    """The epoch log: concurrent appends lose nothing, and records come back oldest first."""
    import threading

    def writer(w):
        for i in range(10):
            storage.append_record("epochs", {"w": w, "i": i})

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = storage.read_records("epochs")
    assert sorted((r["w"], r["i"]) for r in records) == [(w, i) for w in range(4) for i in range(10)]
    for w in range(4):  # each writer's records in the order it wrote them
        assert [r["i"] for r in records if r["w"] == w] == list(range(10))
    assert storage.read_records("no-such-log") == []


def test_endpoint_from_aws_endpoint_url(s3, monkeypatch):
    """The other way pyarrow takes an endpoint: ``AWS_ENDPOINT_URL`` in the environment, a plain URI."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    plain = Storage(f"s3://{s3.bucket}/env-endpoint")
    plain.write_text("x.txt", "via AWS_ENDPOINT_URL")
    assert Storage(s3.uri("env-endpoint")).read_text("x.txt") == "via AWS_ENDPOINT_URL"
    assert plain.uri_of("x.txt") == f"s3://{s3.bucket}/env-endpoint/x.txt"


def test_split_a_file_location(tmp_path, s3):
    store, name = Storage.split(str(tmp_path / "a" / "ref.pt"))
    assert store.local_root == tmp_path / "a" and name == "ref.pt"
    store, name = Storage.split(s3.uri("refs/dense.pt"))
    assert name == "dense.pt" and store.uri == s3.uri("refs")
