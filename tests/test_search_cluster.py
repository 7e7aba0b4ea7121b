"""The shipped Ray cluster YAMLs pass Ray's own offline checks (what ``ray up`` runs)."""
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
pytest.importorskip("jsonschema")
from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: E402

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"


def test_gpu_cluster_yaml_is_valid():
    config = prepare_config(yaml.safe_load((CLUSTER / "gpu.yaml").read_text()))
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


def _pinned(requirement: str) -> dict[str, str]:
    out = {}
    for line in (CLUSTER.parent / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==")
            out[name.split("[")[0].lower()] = version
    return out[requirement]


def test_gpu_cluster_is_deployable_as_pinned():
    """Ray's own images at the pinned Ray and Python 3.11; the project from requirements.txt; no
    unpinned install; GPU workers scale from zero; the CPU head runs no trial."""
    import re
    import sys

    config = yaml.safe_load((CLUSTER / "gpu.yaml").read_text())
    ray_version = _pinned("ray")
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert py == "py311"
    assert config["docker"]["worker_image"] == f"rayproject/ray:{ray_version}-{py}-gpu"
    assert config["docker"]["head_image"] == f"rayproject/ray:{ray_version}-{py}"
    commands = config["setup_commands"] + config["head_setup_commands"]
    assert any("-r /home/ray/lsh_tune/requirements.txt" in c for c in commands)
    for c in commands:
        for pkg in re.findall(r"pip install (?:-q )?(?:--no-deps )?(\S+)", c):
            assert pkg.startswith("-") or "==" in pkg, f"unpinned install {pkg!r} in {c!r}"
    assert config["available_node_types"]["gpu_worker"]["min_workers"] == 0
    assert config["available_node_types"]["head"]["resources"] == {"CPU": 0}
    assert set(config["file_mounts"].values()) == {"."}
