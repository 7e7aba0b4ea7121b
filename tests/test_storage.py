"""lsh_tune.storage: one filesystem layer over pyarrow.fs, local and on a real S3-compatible server."""
from __future__ import annotations

import math
import os

import pytest

from lsh_tune.errors import LSHUsageError
from lsh_tune.storage import Storage


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


# --------------------------------------------------------------------------- malformed locations
@pytest.mark.parametrize("bad, says", [("s3://", "names no bucket"), ("s3:///runs", "names no bucket"),
                                       ("gs://", "names no bucket"), ("hdfs://", "names no host"),
                                       ("s3:/bucket/runs", "needs //"), ("s3:bucket", "needs //"),
                                       ("runs/a://b", "is not a scheme")])
def test_a_malformed_uri_is_refused_in_one_line_and_never_becomes_a_local_path(bad, says, tmp_path, monkeypatch):
    from lsh_tune.search.config import SearchConfig

    monkeypatch.chdir(tmp_path)
    for make in (Storage, lambda v: SearchConfig(storage_path=v), lambda v: Storage.split(v + "/f.pt")):
        with pytest.raises(LSHUsageError, match=says) as err:
            make(bad)
        assert repr(bad) in str(err.value) or repr(bad + "/f.pt") in str(err.value)
        assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []                     # no ./s3:/... directory
    assert Storage("./s3:/bucket").local_root == tmp_path / "s3:" / "bucket"  # spelled as a directory, it is one


def test_a_uri_stays_a_uri_through_child_and_split(s3):
    root = Storage(f"s3://{s3.bucket}?endpoint_override={s3.endpoint}&scheme=http")
    assert not root.is_local and not root.child("exp").is_local and root.child("exp").root == f"{s3.bucket}/exp"
    with pytest.raises(LSHUsageError, match="names a bucket"):
        Storage.split(f"s3://{s3.bucket}")                    # was Storage('s3:/'): a local directory


# --------------------------------------------------------------------------- the access probe
def _keys(storage: Storage) -> list[str]:
    """Every object under ``storage``'s root, directory markers included (relative paths)."""
    import pyarrow.fs as pafs

    infos = storage.fs.get_file_info(pafs.FileSelector(storage.root, recursive=True, allow_not_found=True))
    return sorted(i.path[len(storage.root) + 1:] for i in infos)


def test_access_probe_on_a_writable_bucket_leaves_no_object(s3):
    exp = Storage(s3.uri("probe-ok")).child("exp")
    exp.check_access()
    assert [k for k in _keys(Storage(s3.uri("probe-ok"))) if k != "exp"] == []  # no probe key (an empty marker at most)
    Storage("/nonexistent-parent/x").check_access()                             # a local root: not probed


def _probe_error(uri: str) -> str:
    with pytest.raises(LSHUsageError) as err:
        Storage(uri).check_access()
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"storage {uri.partition('?')[0]} is not usable: ")
    return text


def test_access_probe_names_a_missing_bucket_and_an_unreachable_endpoint(s3, monkeypatch):
    from helpers import closed_port

    text = _probe_error(f"s3://no-such-bucket/runs/exp?endpoint_override={s3.endpoint}&scheme=http")
    assert "write of a probe object failed: no such bucket" in text and text.endswith("nothing was written")
    port = closed_port()
    text = _probe_error(f"s3://{s3.bucket}/runs/exp?endpoint_override=http://127.0.0.1:{port}&scheme=http")
    assert f"write of a probe object failed: endpoint http://127.0.0.1:{port} unreachable" in text


def test_access_probe_gives_up_on_an_endpoint_that_never_answers(monkeypatch):
    """A server that accepts the connection and never replies: the probe's request timeout ends it."""
    import socket
    import time

    import lsh_tune.storage as storage_module

    monkeypatch.setattr(storage_module, "PROBE_REQUEST_TIMEOUT_S", 1.0)
    monkeypatch.setattr(storage_module, "PROBE_ATTEMPTS", 1)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.monotonic()
        text = _probe_error(f"s3://b/runs/exp?endpoint_override={endpoint}&scheme=http")
        elapsed = time.monotonic() - t0
    assert f"endpoint {endpoint} unreachable" in text and "Timeout" in text
    assert elapsed < 6  # the probe's settings are used: pyarrow's defaults wait ~9 s (3 attempts of 3 s)


# --------------------------------------------------------------------------- IAM: read-only credentials
def _enable_iam(server) -> dict[str, dict[str, str]]:
    """On ``server``: IAM users ``reader`` (get and list only) and ``no_read`` (put, delete and list, no get),
    then IAM checks switched on for every later request. Returns each user's credential env vars."""
    import json
    import urllib.request

    import boto3

    iam = boto3.client("iam", endpoint_url=server.endpoint, region_name="us-east-1")
    users = {"reader": ["s3:GetObject", "s3:ListBucket"], "no_read": ["s3:PutObject", "s3:DeleteObject",
                                                                     "s3:ListBucket"]}
    env = {}
    for user, actions in users.items():
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="only", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        env[user] = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    urllib.request.urlopen(urllib.request.Request(f"{server.endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                                  headers={"Content-Type": "application/octet-stream"})).read()
    return env


@pytest.fixture(scope="module")
def s3_iam():
    """A second moto server whose requests are checked against IAM: ``(server, {user: env})``."""
    from s3_server import start_s3_server

    server = start_s3_server(bucket="lsh-iam")
    try:
        yield server, _enable_iam(server)
    finally:
        server.stop()


def test_access_probe_names_refused_credentials_and_a_read_only_bucket(s3_iam, monkeypatch):
    server, users = s3_iam
    uri = server.uri("runs/exp")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOSUCHUSER000000")
    assert "write of a probe object failed: credentials refused" in _probe_error(uri)
    for name, value in users["reader"].items():
        monkeypatch.setenv(name, value)
    text = _probe_error(uri)
    assert "write of a probe object failed: access denied" in text and text.endswith("nothing was written")
    assert _keys(Storage(server.uri("runs"))) == []
    for name, value in users["no_read"].items():
        monkeypatch.setenv(name, value)
    text = _probe_error(uri)  # written, but not readable (nor deletable: pyarrow reads an object's head first)
    assert "read back of a probe object failed: access denied" in text
    left = text.rsplit("; the probe ", 1)[1].removesuffix(" is left behind")
    for name, value in users["reader"].items():
        monkeypatch.setenv(name, value)
    assert [f"s3://{server.bucket}/runs/{k}" for k in _keys(Storage(server.uri("runs"))) if k != "exp"] == [left]


# --------------------------------------------------------------------------- lsh-tune search, before Ray
def _search(tmp_path, storage_path: str, env: dict, *extra: str):
    """``lsh-tune search`` run in the empty directory ``tmp_path/cwd`` with a Ray temp dir beside it."""
    import subprocess
    import sys

    from helpers import REPO

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = dict(os.environ, **env, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "lsh_tune", "search", "--storage-path", storage_path, "--name", "exp",
                        "--gpus-per-trial", "0", "--max-tokens", "2000", "--num-cpus", "1",
                        "--ray-temp-dir", str(tmp_path / "ray"), *extra],
                       capture_output=True, text=True, timeout=300, env=env, cwd=cwd)
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and r.stderr.count("\n") == 1 and r.stderr.startswith("lsh-tune: error: "), r.stderr
    assert "Traceback" not in r.stderr and "Ray" not in r.stderr
    assert not (tmp_path / "ray").exists()                   # Ray never started
    assert list(cwd.iterdir()) == []                         # nothing written here (no ./s3:/exp)
    return r.stderr


@pytest.mark.parametrize("case", ["no bucket", "no server", "missing bucket"])
def test_search_refuses_bad_object_storage_in_one_line_before_ray(case, s3, tmp_path):
    from helpers import closed_port

    if case == "no bucket":
        assert "storage_path='s3://' names no bucket" in _search(tmp_path, "s3://", s3.env())
    elif case == "no server":
        port = closed_port()
        uri = f"s3://{s3.bucket}/runs?endpoint_override=http://127.0.0.1:{port}&scheme=http"
        err = _search(tmp_path, uri, s3.env())
        assert f"storage s3://{s3.bucket}/runs/exp is not usable: write of a probe object failed: endpoint " \
               f"http://127.0.0.1:{port} unreachable" in err
    else:
        uri = f"s3://no-such-bucket/runs?endpoint_override={s3.endpoint}&scheme=http"
        err = _search(tmp_path, uri, s3.env())
        assert "storage s3://no-such-bucket/runs/exp is not usable: write of a probe object failed: " \
               "no such bucket" in err


@pytest.mark.parametrize("resume", [False, True])
def test_search_refuses_a_read_only_bucket_in_one_line_before_ray(resume, s3_iam, tmp_path, monkeypatch):
    server, users = s3_iam
    err = _search(tmp_path, server.uri("ro"), {**server.env(), **users["reader"]}, *(["--resume"] if resume else []))
    assert f"storage s3://{server.bucket}/ro/exp is not usable: write of a probe object failed: access denied" in err
    assert err.rstrip().endswith("nothing was written")
    for name, value in users["reader"].items():  # list with the reader's own rights
        monkeypatch.setenv(name, value)
    assert _keys(Storage(server.uri("ro"))) == []


def test_python_api_probes_object_storage_before_ray(s3_iam, tmp_path, monkeypatch):
    """``LSHTuner(...)`` refuses a read-only bucket when built, and ``fit()`` checks again before ``ray.init``."""
    ray = pytest.importorskip("ray")
    from dataclasses import replace

    from lsh_tune.api import LSHTuner

    server, users = s3_iam
    for name, value in users["reader"].items():
        monkeypatch.setenv(name, value)
    settings = dict(name="api", gpus_per_trial=0, max_tokens=2000)
    with pytest.raises(LSHUsageError, match=f"storage s3://{server.bucket}/api-ro/api is not usable: write .* access"):
        LSHTuner(storage_path=server.uri("api-ro"), **settings)
    tuner = LSHTuner(storage_path=str(tmp_path / "runs"), **settings)
    tuner.config = replace(tuner.config, storage_path=server.uri("api-ro"))  # the bucket went read-only since
    with pytest.raises(LSHUsageError, match="write of a probe object failed: access denied"):
        tuner.fit()
    assert not ray.is_initialized()
    assert not (tmp_path / "runs").exists()
