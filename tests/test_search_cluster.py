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
