"""The shipped Ray cluster YAMLs pass Ray's own offline checks (what ``ray up`` runs before it touches a
cloud), ``cluster/gpu.yaml`` installs what it should in the right order, and its instance profiles
grant what Ray's autoscaler on the head calls (read from Ray's AWS node provider) and no more to the
workers."""
from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
pytest.importorskip("jsonschema")
from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
#: Packages only the test suite needs: never on a cluster node.
TEST_ONLY = ("pytest", "hypothesis", "moto")


def _gpu_yaml() -> dict:
    return yaml.safe_load((CLUSTER / "gpu.yaml").read_text())


def test_gpu_cluster_yaml_is_valid():
    config = prepare_config(_gpu_yaml())
    validate_config(config)
    assert config["head_node_type"] == "head"
    assert config["available_node_types"]["head"]["resources"] == {"CPU": 0}


def test_fake_multinode_yaml_spells_out_every_field():
    # The wheel lacks fake_multinode's example.yaml, so prepare_config cannot fill defaults for
    # this provider: the file must already be complete for validate_config.
    config = yaml.safe_load((CLUSTER / "local.yaml").read_text())
    validate_config(config)
    assert config["provider"]["type"] == "fake_multinode"
    assert config["available_node_types"]["ray.worker.gpu"]["resources"]["GPU"] == 2


def test_top_level_min_workers_is_rejected():
    config = yaml.safe_load((CLUSTER / "local.yaml").read_text())
    config["min_workers"] = 1
    with pytest.raises(Exception):
        validate_config(config)


def _requirements(name: str = "requirements.txt") -> dict[str, str]:
    """``{package: pinned version}`` of a requirements file (``-r`` lines followed)."""
    out = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            out.update(_requirements(line[3:].strip()))
        elif line:
            assert "==" in line, f"{name}: unpinned {line!r}"
            pkg, version = line.split("==")
            out[pkg.split("[")[0].lower()] = version
    return out


def test_gpu_cluster_is_deployable_as_pinned():
    """Ray's own images at the pinned Ray and Python 3.11; on each node torch first (the CPU build on the
    head, PyPI's CUDA build on a worker) at the pinned version, then requirements.txt, then the package;
    nothing unpinned and nothing test-only; GPU workers scale from zero; the CPU head runs no trial."""
    import sys

    config = _gpu_yaml()
    pins = _requirements()
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert py == "py311"
    assert config["docker"]["worker_image"] == f"rayproject/ray:{pins['ray']}-{py}-gpu"
    assert config["docker"]["head_image"] == f"rayproject/ray:{pins['ray']}-{py}"
    assert config["setup_commands"] == []  # Ray runs them before head_/worker_setup_commands: torch must come first
    for key, index in (("head_setup_commands", "--index-url https://download.pytorch.org/whl/cpu"),
                       ("worker_setup_commands", None)):
        commands = [c.split("#", 1)[0].strip() for c in config[key]]
        assert commands[0].startswith(f"pip install -q torch=={pins['torch']}"), (key, commands)
        assert (index in commands[0]) if index else "--index-url" not in commands[0], (key, commands[0])
        assert commands[1] == "pip install -q -r /home/ray/lsh_tune/requirements.txt", key
        assert commands[2] == "pip install -q --no-deps -e /home/ray/lsh_tune", key
        for c in commands:
            for pkg in re.findall(r"pip install (?:-q )?(?:--no-deps )?(\S+)", c):
                assert pkg.startswith("-") or "==" in pkg, f"unpinned install {pkg!r} in {c!r}"
    assert not set(TEST_ONLY) & set(pins), "test-only packages in requirements.txt (installed on every node)"
    assert set(TEST_ONLY) <= set(_requirements("requirements-test.txt"))
    assert config["available_node_types"]["gpu_worker"]["min_workers"] == 0
    assert config["available_node_types"]["head"]["resources"] == {"CPU": 0}
    assert set(config["file_mounts"].values()) == {"."}
    assert {".venv", ".git", "runs", "tables"} <= set(config["rsync_exclude"])


def test_gpu_cluster_image_driver_check_and_efs_are_documented(tmp_path):
    """The workers' AMI is named (with its driver), and its driver is checked on the host before Ray
    starts: ≥ 580 (CUDA 13.0, what PyPI's torch==2.13.0 wheel is built for) passes, older stops the
    node with a one-line reason. EFS: the mount on the host in initialization_commands and the bind
    mount into the container, both documented in the YAML."""
    config, text = _gpu_yaml(), (CLUSTER / "gpu.yaml").read_text()
    worker = config["available_node_types"]["gpu_worker"]
    assert "base-oss-nvidia-driver-gpu-ubuntu-24.04" in worker["node_config"]["ImageId"]
    assert "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04)" in text and "driver 595" in text
    [check] = worker["initialization_commands"]
    for driver, code in (("595.91.07", 0), ("580.65.06", 0), ("570.172.08", 1)):
        fake = tmp_path / driver
        fake.mkdir()
        (fake / "nvidia-smi").write_text(f"#!/bin/sh\necho {driver}\n")
        (fake / "nvidia-smi").chmod(0o755)
        r = subprocess.run(["bash", "-c", check], env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"},
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == code, (driver, r.stderr)
        assert (r.stderr.count("\n") == 1 and "older than 580" in r.stderr) if code else not r.stderr
    efs = "sudo mount -t nfs4 -o nfsvers=4.1"
    worker_init = text[text.index("    initialization_commands:"):text.index("head_node_type:")]
    head_init = text[text.index("\ninitialization_commands:"):text.index("file_mounts:")]
    assert efs in worker_init and efs in head_init
    run_options = text[text.index("  run_options:"):text.index("provider:")]
    assert "-v /mnt/shared:/mnt/shared" in run_options


def test_idle_timeout_outlasts_a_paper_round():
    """A worker whose trials wait at a round barrier is idle for Ray: the idle timeout must outlast a
    `paper` round on the GPU estimate (E epochs plus a spectrum) of every model, five times over (the
    estimate is a lower bound)."""
    from lsh_tune.cli.experiment import script_defaults
    from lsh_tune.search.config import SearchConfig
    from lsh_tune.search.run.cost import EPOCH_COSTS

    rounds = []
    for model in ("stacked_lstm", "rhn", "awd_lstm_mos"):
        cfg = SearchConfig(**{**script_defaults(["--model", model], "paper"), "gpus_per_trial": 1.0})
        cost = EPOCH_COSTS[(model, "paper")]
        rounds.append(cfg.rounds_every * cost.epoch_seconds("gpu") + cost.ls_seconds("gpu"))
    assert _gpu_yaml()["idle_timeout_minutes"] * 60 >= 5 * max(rounds), max(rounds)


# ---------------------------------------------------------------- instance profiles and their policies
def _autoscaler_ec2_actions() -> set[str]:
    """The EC2 API actions Ray's AWS node provider (what runs on the head) calls, read from its source:
    boto3's snake_case methods as IAM's CamelCase actions (``create_instances`` is ``RunInstances``)."""
    import ray.autoscaler._private.aws.node_provider as provider

    source = Path(provider.__file__).read_text()
    calls = set(re.findall(r"\.((?:create|describe|start|stop|terminate|delete)_[a-z_]+)\(", source))
    actions = {"RunInstances" if c == "create_instances" else "".join(w.title() for w in c.split("_")) for c in calls}
    if ".terminate()" in source:
        actions.add("TerminateInstances")
    if ".stop()" in source:
        actions.add("StopInstances")
    if "instances.filter(" in source:
        actions.add("DescribeInstances")
    assert {"RunInstances", "TerminateInstances", "DescribeInstances", "CreateTags"} <= actions, actions
    return {f"ec2:{a}" for a in actions}


def _allows(policy: dict, action: str, resource: str) -> bool:
    """An IAM policy of Allow statements (no Deny, no conditions) allows ``action`` on ``resource``."""
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow" and "Condition" not in st, st
        actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        resources = [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]
        if any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions) and \
                any(fnmatch.fnmatchcase(resource, r) for r in resources):
            return True
    return False


def _policy(profile: str) -> dict:
    path = CLUSTER / "iam" / f"{profile}.json"
    assert path.is_file(), f"instance profile {profile!r} has no policy {path}"
    return json.loads(path.read_text())


BUCKET, OBJECT = "arn:aws:s3:::YOUR-BUCKET", "arn:aws:s3:::YOUR-BUCKET/lsh/ptb_rhn/lsh/state.json"
S3_ACTIONS = (("s3:ListBucket", BUCKET), ("s3:GetObject", OBJECT), ("s3:PutObject", OBJECT), ("s3:DeleteObject", OBJECT))


def test_head_profile_keeps_the_autoscalers_ec2_rights_and_workers_get_the_bucket_only():
    """The head's profile replaces Ray's default ``ray-autoscaler-v1`` (EC2 and S3 full access), so its
    policy in ``cluster/iam/`` must grant every EC2 call of Ray's autoscaler, ``iam:PassRole`` on the
    workers' role (launching a worker with a profile passes its role) and the bucket; the workers'
    policy grants the bucket and nothing of EC2 or IAM. ``cluster/README.md`` creates exactly these."""
    config = _gpu_yaml()
    nodes = config["available_node_types"]
    head_cfg, worker_cfg = nodes["head"]["node_config"], nodes["gpu_worker"]["node_config"]
    worker_profile = worker_cfg["IamInstanceProfile"]["Name"]
    if "IamInstanceProfile" not in head_cfg:  # Ray's default head profile: it cannot pass a role
        assert "IamInstanceProfile" not in worker_cfg
        return
    head_profile = head_cfg["IamInstanceProfile"]["Name"]
    head, worker = _policy(head_profile), _policy(worker_profile)
    missing = sorted(a for a in _autoscaler_ec2_actions() if not _allows(head, a, "*"))
    assert not missing, f"{head_profile} lacks the autoscaler's {missing}"
    assert _allows(head, "iam:PassRole", f"arn:aws:iam::123456789012:role/{worker_profile}")
    assert not _allows(head, "iam:PassRole", "arn:aws:iam::123456789012:role/admin")
    assert _allows(head, "ssm:GetParameters", "arn:aws:ssm:us-west-2::parameter" +
                   worker_cfg["ImageId"].removeprefix("resolve:ssm:"))
    for action, resource in S3_ACTIONS:
        assert _allows(head, action, resource) and _allows(worker, action, resource), action
    for st in worker["Statement"]:
        actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        assert all(a.startswith("s3:") for a in actions), st
    trust = json.loads((CLUSTER / "iam" / "ec2-trust.json").read_text())
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    readme = (CLUSTER / "README.md").read_text()
    for profile in (head_profile, worker_profile):
        assert f"--instance-profile-name {profile} --role-name {profile}" in readme
        assert f"--policy-document file://cluster/iam/{profile}.json" in readme
