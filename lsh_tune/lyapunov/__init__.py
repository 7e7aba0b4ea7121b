"""Lyapunov spectrum (LS) engine: Jacobians, the QR algorithm, LS-space distances, reference cache.

No Ray imports here: the search layer calls these pure functions. Exponents are natural-log
rates per time step (the authors' code used log₂).
"""
from lsh_tune.lyapunov.cache import ReferenceCache, ReferenceLS, reference_key
from lsh_tune.lyapunov.checkpoint import load_checkpoint_model
from lsh_tune.lyapunov.distance import (EMBEDDINGS, METRICS, REFERENCE, embed_histories, embed_spectra,
                                        fill_neg_inf, is_diverged, ls_distances, point_distance, rank_candidates)
from lsh_tune.lyapunov.jacobians import (CONVENTIONS, analytic_stepper, autograd_stepper, jacobian,
                                         make_stepper, state_size, state_vector, supports_analytic)
from lsh_tune.lyapunov.spectrum import (LSConfig, ls_summary, lyapunov_spectrum, reference_spectrum,
                                        validation_tokens)
from lsh_tune.lyapunov._report import spectrum_metrics

__all__ = ["CONVENTIONS", "EMBEDDINGS", "LSConfig", "METRICS", "REFERENCE", "ReferenceCache", "ReferenceLS",
           "analytic_stepper", "autograd_stepper", "embed_histories", "embed_spectra", "fill_neg_inf", "is_diverged",
           "jacobian",
           "load_checkpoint_model", "ls_distances", "ls_summary", "lyapunov_spectrum", "make_stepper", "point_distance",
           "rank_candidates", "reference_key", "reference_spectrum", "state_size", "state_vector",
           "supports_analytic", "validation_tokens", "spectrum_metrics"]
