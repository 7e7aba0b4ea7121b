"""Decisions taken once Ray runs, tested as pure functions: a local storage path on a cluster spanning
hosts (``check_shared_storage``), a trial given a GPU where CUDA is unusable (``device_for``)."""
import pytest

from lsh_tune.errors import LSHUsageError
from lsh_tune.search.run.preflight import check_shared_storage, filesystem_type

MOUNTS = """overlay / overlay rw,relatime 0 0
/dev/sda1 /data ext4 rw 0 0
fs-1.efs.aws:/ /mnt/efs nfs4 rw 0 0
s3fs /mnt/bucket fuse.s3fs rw 0 0
/dev/sdb1 /mnt/my\\040disk xfs rw 0 0
"""


def test_the_file_system_of_a_path_is_its_longest_mount_point():
    assert filesystem_type("/home/u/runs", MOUNTS) == "overlay"
    assert filesystem_type("/data/runs", MOUNTS) == "ext4"
    assert filesystem_type("/database", MOUNTS) == "overlay"           # not under /data
    assert filesystem_type("/mnt/efs/runs", MOUNTS) == "nfs4"
    assert filesystem_type("/mnt/my disk/x", MOUNTS) == "xfs"
    assert filesystem_type("/x", "") is None


@pytest.mark.parametrize("path,is_local,ips", [
    ("/data/runs", True, ["10.0.0.1", "10.0.0.1"]),       # several Ray nodes, one host (the fake cluster)
    ("/data/runs", True, ["10.0.0.1"]),                   # one node
    ("/mnt/efs/runs", True, ["10.0.0.1", "10.0.0.2"]),    # a network file system
    ("/mnt/bucket/runs", True, ["10.0.0.1", "10.0.0.2"]),  # fuse.*
    ("s3://bucket/runs", False, ["10.0.0.1", "10.0.0.2"]),  # an object store
])
def test_shared_or_single_host_storage_passes(path, is_local, ips):
    check_shared_storage(path, is_local, "10.0.0.1", ips, MOUNTS)


def test_a_local_path_on_a_multi_host_cluster_is_refused_naming_the_fix():
    with pytest.raises(LSHUsageError) as e:
        check_shared_storage("/data/runs", True, "10.0.0.1", ["10.0.0.1", "10.0.0.2", "10.0.0.3"], MOUNTS)
    text = str(e.value)
    assert len(text.splitlines()) == 1
    assert "storage_path='/data/runs' is a local directory (ext4)" in text and "10.0.0.2, 10.0.0.3" in text
    assert "NFS" in text and "s3://" in text
    check_shared_storage("/data/runs", True, "10.0.0.1", ["10.0.0.2"], None)  # mounts unknown: not refused


def test_a_trial_given_a_gpu_without_cuda_fails_in_one_line_unless_fallback_is_allowed():
    pytest.importorskip("ray")
    from lsh_tune.search.tune.trainable import device_for

    assert device_for([], False, None, {}, False) == "cpu"                        # no GPU asked: CPU
    assert device_for([0], True, "12.4", {}, True) == "cuda"
    with pytest.raises(RuntimeError) as e:
        device_for([0], False, None, {}, True)
    text = str(e.value)
    assert len(text.splitlines()) == 1 and "torch.version.cuda=None: this torch is a CPU-only build" in text
    assert "LSH_ALLOW_CPU_FALLBACK=1" in text
    with pytest.raises(RuntimeError, match="no usable GPU driver"):
        device_for([1], False, "12.4", {}, False)
    assert device_for([0], False, "12.4", {"LSH_ALLOW_CPU_FALLBACK": "1"}, True) == "cpu"   # asked for
    assert device_for([0], False, "12.4", {}, True, allow_cpu_fallback=True) == "cpu"       # --allow-cpu-fallback
    assert device_for([0], False, None, {"RAY_FAKE_CLUSTER": "1"}, False) == "cpu"          # fake GPUs
    with pytest.raises(RuntimeError):
        device_for([0], False, "12.4", {"RAY_FAKE_CLUSTER": "1"}, True)                     # a real GPU here


def test_allow_cpu_fallback_is_a_flag_that_reaches_the_trial():
    """``--allow-cpu-fallback`` (bare: true) is a search option carried into every trial's settings."""
    from lsh_tune.cli import build_parser
    from lsh_tune.cli.search import config_from_args
    from lsh_tune.search.candidate import trial_settings

    for argv, expected in ((["--allow-cpu-fallback"], True), (["--allow-cpu-fallback", "false"], False), ([], False)):
        cfg = config_from_args(build_parser().parse_args(["search", "--gpus-per-trial", "0", *argv]))
        assert cfg.allow_cpu_fallback is expected
        assert trial_settings(cfg, ("death_rate",)).allow_cpu_fallback is expected
