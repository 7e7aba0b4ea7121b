"""The paper's three recurrent language models, as ordinary ``nn.Module``s."""
from lsh_tune.models.base import RNNLanguageModel, State
from lsh_tune.models.lstm import AWDLSTMMoS, StackedLSTM, lstm_cell_step
from lsh_tune.models.presets import (MODELS, PRESETS, ModelSpec, TrainSpec, build_model, count_parameters,
                                     get_preset, with_overrides)
from lsh_tune.models.rhn import RHN

__all__ = ["AWDLSTMMoS", "MODELS", "PRESETS", "ModelSpec", "RHN", "RNNLanguageModel", "StackedLSTM", "State",
           "TrainSpec", "build_model", "count_parameters", "get_preset", "lstm_cell_step", "with_overrides"]
