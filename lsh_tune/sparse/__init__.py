"""Dynamic sparse training (Selfish-RNN semantics): masks, prune-and-regrow, SNT-ASGD hook.

Pure rules live in ``_modes`` (death, growth, redistribution, schedule) and ``_layout``
(tensor selection, uniform/ER densities); ``_export`` writes a masked model's weights as a plain
state dict of sparse CSR tensors (:func:`sparse_state_dict`) and reads it back; :class:`Masking`
holds the masks of one model and :class:`SparseTrainingHook` plugs them into
:class:`lsh_tune.train.Trainer`. A whole run from specs to files (``lsh-tune train-sparse``) is
:func:`lsh_tune.train_sparse.run_sparse_training`.
"""
from lsh_tune.sparse._config import (DEATH_MODES, DEATH_RATE_FLOOR, GROWTH_MODES, MASK_GROUPS,
                                     REDISTRIBUTION_MODES, SPARSE_INITS, SparseConfig)
from lsh_tune.sparse._export import SPARSE_CSR_FORMAT, csr_from_mask, dense_state_dict, sparse_state_dict
from lsh_tune.sparse._hook import SparseTrainingHook, build_sparse_hook
from lsh_tune.sparse._layout import er_densities, exact_counts, masked_tensors, target_count, tensor_groups
from lsh_tune.sparse._masking import Masking, sparse_seed
from lsh_tune.sparse._modes import (allocate, cosine_death_rate, death_global_magnitude, death_magnitude,
                                    death_set, death_threshold, grow, n_to_remove, redistribution_shares)

__all__ = ["DEATH_MODES", "DEATH_RATE_FLOOR", "GROWTH_MODES", "MASK_GROUPS", "Masking", "REDISTRIBUTION_MODES",
           "SPARSE_CSR_FORMAT", "SPARSE_INITS", "SparseConfig", "SparseTrainingHook", "allocate", "build_sparse_hook",
           "cosine_death_rate", "csr_from_mask", "death_global_magnitude", "death_magnitude", "death_set",
           "death_threshold", "dense_state_dict", "er_densities", "exact_counts", "grow", "masked_tensors",
           "n_to_remove", "redistribution_shares", "sparse_seed", "sparse_state_dict", "target_count",
           "tensor_groups"]
