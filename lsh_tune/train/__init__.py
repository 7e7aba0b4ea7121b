"""Training loop, NT-ASGD weight averaging and checkpoint helpers."""
from lsh_tune.train.averaging import WeightAverager
from lsh_tune.train.checkpoint import atomic_torch_save, atomic_write_json, resolve_device
from lsh_tune.train.trainer import (Trainer, TrainingHook, TrainingProgress, nt_asgd_should_switch, perplexity,
                                    seed_everything)

__all__ = ["Trainer", "TrainingHook", "TrainingProgress", "WeightAverager", "atomic_torch_save",
           "atomic_write_json", "nt_asgd_should_switch", "perplexity", "resolve_device", "seed_everything"]
