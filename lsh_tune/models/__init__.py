"""The paper's three recurrent language models, as ordinary ``nn.Module``s, and the registry they join.

Importing the package registers the built-ins in this order: ``stacked_lstm``, ``rhn``,
``awd_lstm_mos`` (:data:`MODELS`). A new model registers a :class:`ModelEntry` (see
:mod:`lsh_tune.models.registry`).
"""
from lsh_tune.models.base import RNNLanguageModel, State
from lsh_tune.models.registry import (MASK_GROUPS, MODELS, PRESETS, ModelEntry, entry_for_model, get_model_entry,
                                      mask_groups_by_name, model_has_cell_state, register_model, unregister_model)
from lsh_tune.models.specs import ModelSpec, TrainSpec
from lsh_tune.models.lstm import LSTMStack, StackedLSTM, lstm_cell_step
from lsh_tune.models.rhn import RHN
from lsh_tune.models.awd_lstm_mos import AWDLSTMMoS
from lsh_tune.models.presets import build_model, count_parameters, get_preset, with_overrides

__all__ = ["AWDLSTMMoS", "LSTMStack", "MASK_GROUPS", "MODELS", "ModelEntry", "PRESETS", "ModelSpec", "RHN",
           "RNNLanguageModel", "StackedLSTM", "State", "TrainSpec", "build_model", "count_parameters",
           "entry_for_model", "get_model_entry", "get_preset", "lstm_cell_step", "mask_groups_by_name",
           "model_has_cell_state", "register_model", "unregister_model", "with_overrides"]
