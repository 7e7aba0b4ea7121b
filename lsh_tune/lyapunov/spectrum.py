"""The QR algorithm for the Lyapunov spectrum (paper §3, Eq. 1).

For K sequences of length T (after optional warm-up steps), starting from h_0 = 0 and Q_0 = I:
each step computes J_t = d s_t / d s_{t-1} and ``Q_t, R_t = qr(J_t · Q_{t-1})`` per sequence, and

    λ_i = 1/(K T) Σ_k Σ_t log |r_ii^{t,k}|        (natural log, units: nats per time step)

(the authors' code used log₂; multiply by 1/ln 2 ≈ 1.4427 to compare). Warm-up steps evolve
the state and Q but are not averaged. The model runs in eval mode (no dropout) and no gradients.

Order of a stack's state (``qr``). J is block lower-triangular across layers (layer l reads layer
l-1's new h, never a later layer), so the result of Eq. 1 at finite T depends on how the layers
are ordered in the state vector:

* ``joint`` (the authors'): bottom layer first. J·Q mixes the layers, and every step is one QR of
  size N = Σ N_l.
* ``layered`` (default): top layer first. J is then block *upper*-triangular, Q_0 = I is block
  diagonal and stays so (a block upper-triangular J·Q has exact zeros below each diagonal block's
  columns, so those columns' Householder reflectors never touch another block's rows), so Eq. 1
  splits exactly into one QR per layer over that layer's own recurrent block,
  Q_t^l R_t^l = A_t^l Q_{t-1}^l, and diag(R_t) is the union of the layers' diagonals. Cost
  Σ N_l³ instead of (Σ N_l)³: 4× fewer flops for two equal layers.

Both estimate the same spectrum: a block-triangular cocycle's Lyapunov exponents are the union of
its diagonal blocks' exponents. At K = 2, T = 35 the two differ by about as much as K = 2 differs
from K = 10 (``BENCHMARKS.md``, (d)), and they rank candidates alike. Single-layer models (RHN,
one-layer stacks) give identical results in both orders.

* ``cholesky``: the ``layered`` order and the same exponents (equal to ``layered`` up to roundoff),
  computed by Cholesky QR instead of Householder: see "Cholesky QR" below. Built for GPUs, where
  Householder QR is slow (cuSOLVER ``geqrf`` at 3000 × 3000 float32: 18.2 ms on an H200 against
  3.0 ms for a Cholesky QR). On a CPU it is slower than ``layered`` (``BENCHMARKS.md``, (e): 0.75×
  under ``h``, 0.45× under ``hc`` on one core): LAPACK's blocked Householder runs near GEMM speed
  there, and a Cholesky QR step costs more flops (J·B, ZᵀZ, Cholesky, triangular solve: 5.3 n³
  against 3.3 n³ for ``geqrf`` + ``ormqr``).

Householder QR paths (``layered``, ``joint``):

* full spectrum (``top=None``): Householder QR (``geqrf``) whose Q is never formed; the next
  step's J·Q is ``ormqr`` applied to the dense J from the right.
* top-k (``top=k``): Q of shape (N, k) carried explicitly (reduced ``qr``, sign-fixed so that
  diag(R) ≥ 0), and J·Q formed without forming J (gate-wise products, see ``jacobians``). With
  ``layered``, each layer carries min(k, N_l) columns and the k largest of their exponents are kept
  (the union's top k are among each layer's top k).

The sign fix does not change |r_ii| (column signs of Q only flip signs of R's columns), so both
paths give the same exponents.

Cholesky QR (``qr="cholesky"``, full spectrum and top-k alike). Per layer, a basis B_t of shape
(n, m) (m = n, or min(top, n)) is carried instead of an orthonormal Q: Z = A_t·B_{t-1}, the Gram
matrix G = ZᵀZ, its Cholesky factor U (G = UᵀU, upper triangular), B_t = Z·U⁻¹ (triangular solve),
and log|u_ii| is summed. The K sequences and the equal-sized layers are one batch of each call.
B_t = Z·U⁻¹ with U upper triangular spans the same nested subspaces (columns 1..i) as Z, so for
*any* upper-triangular U_t the product U_T ⋯ U_1 equals the R factor of the Jacobian product up to
the R factor of B_T itself: with B_0 = I,

    Σ_{t=w+1}^{T} log|r_ii^t| = Σ_{t=w+1}^{T} log|u_ii^t| + log|r_ii(B_T)| − log|r_ii(B_w)|

(r(B): R of a Householder QR of B, computed twice per run). The engine adds those two corrections,
so B_t need not stay exactly orthonormal and one Cholesky QR per step suffices; re-orthonormalising
passes (CholeskyQR2/3) would cost another 3.3 n³ each. What B_t must keep is a good conditioning of
its columns' directions (their lengths do not matter: every operation is column-scale invariant),
which Cholesky QR keeps as long as G's Cholesky factorisation is accurate. Breakdown is detected,
not prevented: a sequence whose factorisation fails (a non-positive pivot, or u_ii² < ε·g_ii with
ε the dtype's machine epsilon) is redone with G and U in float64 (from a float32 Z), and one that
fails again by a Householder QR of Z for that step (an exactly zero column of Z, e.g. a dead unit
at the first step, gives r_ii = 0, −inf, exactly as ``layered`` does; after that step a direction
J maps to zero gives roundoff, log ε + O(1) per step, in both QRs but not the same roundoff).
``stats`` of :func:`lyapunov_spectrum` counts both. Measured (``BENCHMARKS.md``, (e)): in float32 the ``h``
Jacobians of a 2 × 650 LSTM break down in about one step in twenty, ``hc`` ones (cell-state
directions contracting by up to e⁻¹¹ per step) in nearly every step, so under ``hc`` a layer batch
soon factorises in float64 throughout. Rejected after measuring: a *shifted* Cholesky QR
(G + s·diag(G), s = 1e-5) never breaks down but gave errors of O(1) under ``hc``; one QR per two
Jacobians lost the trailing exponents (errors up to 8e-3, 3.5e-3 with a float64 Gram matrix); so
every step is factorised, once. Matrix products run in IEEE float32 (TF32 is switched off for the
duration: a Gram matrix needs every bit).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from lsh_tune.errors import LSHUsageError, check_choice, check_int
from lsh_tune.lyapunov.jacobians import CONVENTIONS, Stepper, cast_state, make_stepper, state_size
from lsh_tune.models.base import RNNLanguageModel

__all__ = ["DTYPES", "JACOBIAN_METHODS", "LSConfig", "QR_ORDERS", "ls_summary", "lyapunov_spectrum",
           "qr_exponents", "reference_spectrum", "validation_tokens"]

DTYPES = ("float32", "float64")
JACOBIAN_METHODS = ("analytic", "autograd")
QR_ORDERS = ("layered", "joint", "cholesky")



@dataclass(frozen=True)
class LSConfig:
    """Settings of one Lyapunov-spectrum computation (validated at construction).

    Args:
        k: K, number of validation sequences averaged (paper: 2).
        steps: T, number of averaged time steps per sequence (paper: BPTT = 35).
        warmup: steps run before averaging starts (state and Q evolve; the authors used 10).
        state: ``"h"`` (paper: c_{t-1} held fixed, N = Σ H_l) or ``"hc"`` (full LSTM state).
        top: compute only the ``top`` leading exponents (Q is N × top); ``None`` = all N.
        dtype: ``"float32"`` or ``"float64"`` for Jacobians and QR.
        jacobian: ``"analytic"`` (closed form where the model has one) or ``"autograd"``.
        qr: ``"layered"`` (top layer first: one Householder QR per layer, exact split),
            ``"joint"`` (the authors' bottom-up order: one QR over all layers) or ``"cholesky"``
            (the ``layered`` exponents by Cholesky QR, batched: for GPUs); see the module docstring.

    Raises:
        TypeError: a count is not an int.
        LSHUsageError: a value is out of range or not an allowed choice.
    """

    k: int = 2
    steps: int = 35
    warmup: int = 10
    state: str = "h"
    top: int | None = None
    dtype: str = "float32"
    jacobian: str = "analytic"
    qr: str = "layered"

    def __post_init__(self) -> None:
        check_int("k", self.k, 1)
        check_int("steps", self.steps, 1)
        check_int("warmup", self.warmup, 0)
        if self.top is not None:
            check_int("top", self.top, 1)
        check_choice("state", self.state, CONVENTIONS)
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("jacobian", self.jacobian, JACOBIAN_METHODS)
        check_choice("qr", self.qr, QR_ORDERS)

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    @property
    def total_steps(self) -> int:
        """Rows of validation tokens needed: warmup + steps."""
        return self.warmup + self.steps

    def to_dict(self) -> dict:
        return asdict(self)


def validation_tokens(source, k: int = 2, length: int = 45) -> torch.LongTensor:
    """The first validation batch: (length, k) tokens.

    ``source`` is a :class:`~lsh_tune.data.Corpus` (its ``valid`` split is used) or a 1-D token
    tensor. The stream is cut into ``k`` columns (:func:`~lsh_tune.data.batchify`) and the first
    ``length`` rows are kept, so column j starts at token j·(len // k).
    """
    from lsh_tune.data import batchify

    stream = source.valid if hasattr(source, "valid") else torch.as_tensor(source)
    check_int("k", k, 1)
    check_int("length", length, 1)
    if stream.numel() < k * length:
        raise LSHUsageError(f"validation split has {stream.numel()} tokens; k={k} × length={length} needed")
    return batchify(stream, k)[:length]


def _check_inputs(model: RNNLanguageModel, tokens: torch.Tensor, cfg: LSConfig) -> int:
    if tokens.dim() != 2:
        raise LSHUsageError(f"tokens must be (T, K); got shape {tuple(tokens.shape)}")
    if tokens.shape[0] < cfg.total_steps:
        raise LSHUsageError(f"tokens have {tokens.shape[0]} rows; warmup + steps = {cfg.total_steps} needed")
    if tokens.shape[1] < cfg.k:
        raise LSHUsageError(f"tokens have {tokens.shape[1]} sequences; k={cfg.k} needed")
    n = state_size(model, cfg.state)
    if cfg.top is not None and cfg.top > n:
        raise LSHUsageError(f"top={cfg.top} exceeds the state size N={n}")
    return n


def lyapunov_spectrum(model: RNNLanguageModel, tokens: torch.Tensor, config: LSConfig | None = None,
                      *, stepper: Stepper | None = None, stats: dict | None = None) -> np.ndarray:
    """Lyapunov spectrum of ``model`` driven by ``tokens`` (Eq. 1).

    Args:
        model: a language model with ``init_state``, ``embed`` and ``step``; runs on its device.
        tokens: (T_total, K') LongTensor; the first ``config.k`` columns and
            ``config.warmup + config.steps`` rows are used (see :func:`validation_tokens`).
        config: :class:`LSConfig`; default ``LSConfig()``.
        stepper: override the Jacobian stepper (testing).
        stats: a dict to fill with counts (``qr="cholesky"`` only): ``qr_steps`` (Cholesky QRs
            tried: sequences × layers × steps), ``float64_gram`` (of those, factorised with a float64
            Gram matrix: float32 runs, after a breakdown or once a layer batch switched to float64)
            and ``householder_fallbacks`` (done by Householder QR after a float64 breakdown).

    Returns:
        float64 array (N,) or (top,), sorted descending, in nats per time step. A singular
        Jacobian direction gives −inf; a diverged model gives NaN entries.

    >>> import torch
    >>> from lsh_tune.models import build_model, get_preset
    >>> m = build_model(get_preset("stacked_lstm", "tiny")[0], 50)
    >>> ls = lyapunov_spectrum(m, torch.randint(50, (45, 2)))
    >>> ls.shape, bool(ls[0] >= ls[-1])
    ((128,), True)
    """
    cfg = config or LSConfig()
    n = _check_inputs(model, tokens, cfg)
    dtype = cfg.torch_dtype
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            tokens = tokens[: cfg.total_steps, : cfg.k].to(device)
            xs = model.embed(tokens).to(dtype)
            state = cast_state(model.init_state(cfg.k), dtype)
        step = stepper or make_stepper(model, convention=cfg.state, dtype=dtype, method=cfg.jacobian)
        logs = qr_exponents(step, state, xs, n, cfg, stats)
    finally:
        model.train(was_training)
    return _finish(logs, cfg)


def _finish(logs: torch.Tensor, cfg: LSConfig) -> np.ndarray:
    """Mean over K and T of log|r_ii| -> descending float64 numpy array (``top`` entries if set)."""
    lam = logs.double().sum(dim=0).cpu().numpy() / (cfg.k * cfg.steps)
    lam = -np.sort(-lam)
    lam = np.concatenate([lam[~np.isnan(lam)], lam[np.isnan(lam)]])
    return lam if cfg.top is None else lam[: cfg.top]


def qr_exponents(step: Stepper, state, xs: torch.Tensor, n: int, cfg: LSConfig,
                 stats: dict | None = None) -> torch.Tensor:
    """Run the QR algorithm; returns Σ_t log|r_ii| per sequence, shape (K, N or ≥ top).

    ``stats``: filled with the Cholesky QR counts (see :func:`lyapunov_spectrum`).
    """
    with torch.no_grad() if cfg.jacobian == "analytic" else torch.enable_grad():
        if cfg.qr == "cholesky":
            with _ieee_float32_matmul():
                return _cholesky_qr(step, state, xs, cfg, stats if stats is not None else {})
        if cfg.top is None:
            return _full_qr(step, state, xs, cfg)
        return _topk_qr(step, state, xs, cfg)


def _blocks(jac, cfg: LSConfig) -> list:
    """The Jacobians the QR runs on: the layers' own blocks (``layered``) or J itself (``joint``)."""
    return jac.diagonal_blocks() if cfg.qr == "layered" else [jac]


def _log_abs_diag(a: torch.Tensor) -> torch.Tensor:
    """log|diag(a)| as float64 on the CPU (the running sums stay exact to ~1e-15 in any dtype)."""
    return torch.log(torch.diagonal(a, dim1=-2, dim2=-1).abs()).to("cpu", torch.float64)


def _full_qr(step: Stepper, state, xs: torch.Tensor, cfg: LSConfig) -> torch.Tensor:
    """Householder path: geqrf per sequence and block, J·Q by ormqr from the right, Q never formed."""
    acc, factors = None, []
    for t in range(cfg.total_steps):
        jac, state = step(state, xs[t])
        blocks = [blk.dense().detach() for blk in _blocks(jac, cfg)]
        if acc is None:
            acc = torch.zeros((cfg.k, sum(j.shape[-1] for j in blocks)), dtype=torch.float64)
            factors = [[None] * len(blocks) for _ in range(cfg.k)]
        for b in range(cfg.k):
            for i, j in enumerate(blocks):
                f = factors[b][i]
                z = j[b] if f is None else torch.ormqr(f[0], f[1], j[b], left=False, transpose=False)
                factors[b][i] = torch.geqrf(z)
            if t >= cfg.warmup:
                acc[b] += torch.cat([_log_abs_diag(f[0]) for f in factors[b]])
        state = _detach(state)
    return acc


def _topk_qr(step: Stepper, state, xs: torch.Tensor, cfg: LSConfig) -> torch.Tensor:
    """Explicit-Q path: Q (K, N_block, min(top, N_block)) per block, reduced QR, sign-fixed so diag(R) ≥ 0."""
    dtype, device = xs.dtype, xs.device
    qs, acc = None, None
    for t in range(cfg.total_steps):
        jac, state = step(state, xs[t])
        blocks = _blocks(jac, cfg)
        if qs is None:
            qs = [torch.eye(blk.n, min(cfg.top, blk.n), dtype=dtype, device=device).expand(cfg.k, -1, -1).contiguous()
                  for blk in blocks]
            acc = torch.zeros((cfg.k, sum(q.shape[-1] for q in qs)), dtype=torch.float64)
        logs = []
        for i, blk in enumerate(blocks):
            q, r = torch.linalg.qr(blk.matmul(qs[i]).detach())
            d = torch.diagonal(r, dim1=-2, dim2=-1)
            qs[i] = q * torch.where(d < 0, -1.0, 1.0).to(dtype)[:, None, :]
            logs.append(torch.log(d.abs()).to("cpu", torch.float64))
        if t >= cfg.warmup:
            acc += torch.cat(logs, dim=-1)
        state = _detach(state)
    return acc


@contextlib.contextmanager
def _ieee_float32_matmul():
    """float32 matrix products in IEEE float32 (not TF32) while inside: a Gram matrix needs every bit."""
    before = torch.get_float32_matmul_precision()
    if before != "highest":
        torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        if before != "highest":
            torch.set_float32_matmul_precision(before)


class _Group:
    """Layers of one size batched together: ``layers`` (indices), ``b`` (len(layers)·K, n, m) the
    carried bases (layer-major), ``acc`` (len(layers)·K, m) the float64 sums of log|u_ii| on the device,
    ``gram64``: factorise in float64 from the start (set for the rest of the run once more than half
    the batch broke down in the working dtype in one step: ``hc`` LSTM Jacobians do in every step)."""

    def __init__(self, layers: list[int], b: torch.Tensor) -> None:
        self.layers, self.b = layers, b
        self.acc = torch.zeros(b.shape[0], b.shape[-1], dtype=torch.float64, device=b.device)
        self.gram64 = False  # start from a float64 Gram matrix: most of the batch broke down in float32 once


def _cholesky_qr(step: Stepper, state, xs: torch.Tensor, cfg: LSConfig, stats: dict) -> torch.Tensor:
    """Cholesky QR path (module docstring): bases B (K, n_l, m_l) per layer, batched by size; returns (K, Σ m_l)."""
    dtype, device, k = xs.dtype, xs.device, cfg.k
    for key in ("qr_steps", "float64_gram", "householder_fallbacks"):
        stats.setdefault(key, 0)
    groups: list[_Group] = []
    for t in range(cfg.total_steps):
        jac, state = step(state, xs[t])
        blocks = jac.diagonal_blocks()
        if not groups:
            sizes: dict[int, list[int]] = {}
            for i, blk in enumerate(blocks):
                sizes.setdefault(blk.n, []).append(i)
            for n, layers in sizes.items():
                m = n if cfg.top is None else min(cfg.top, n)
                eye = torch.eye(n, m, dtype=dtype, device=device)
                groups.append(_Group(layers, eye.expand(len(layers) * k, -1, -1).contiguous()))
        for g in groups:
            zs = [blocks[i].matmul(g.b[j * k:(j + 1) * k]) for j, i in enumerate(g.layers)]
            g.b, logs, broke = _cholesky_qr_step((zs[0] if len(zs) == 1 else torch.cat(zs)).detach(), stats,
                                                 g.gram64)
            g.gram64 = g.gram64 or 2 * broke > g.b.shape[0]
            if t >= cfg.warmup:
                g.acc += logs
            if t + 1 == cfg.warmup:
                g.acc -= _log_abs_r(g.b)
        state = _detach(state)
    per_layer = {}
    for g in groups:
        g.acc += _log_abs_r(g.b)
        for j, i in enumerate(g.layers):
            per_layer[i] = g.acc[j * k:(j + 1) * k]
    return torch.cat([per_layer[i] for i in sorted(per_layer)], dim=-1).cpu()


def _log_abs_r(b: torch.Tensor) -> torch.Tensor:
    """log|r_ii| (float64) of a Householder QR of each (n, m) basis in the batch b: the correction term."""
    return torch.log(torch.diagonal(torch.geqrf(b)[0], dim1=-2, dim2=-1).abs()).double()


def _cholesky_factor(z: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """U (batch, m, m) with UᵀU = ZᵀZ, computed in ``dtype``, and which batch entries broke down (bool)."""
    zz = z.to(dtype)
    g = zz.mT @ zz
    u, info = torch.linalg.cholesky_ex(g, upper=True)
    d = torch.diagonal(u, dim1=-2, dim2=-1)
    small = d * d < torch.finfo(dtype).eps * torch.diagonal(g, dim1=-2, dim2=-1)
    return u, (info != 0) | small.any(dim=-1) | ~torch.isfinite(d).all(dim=-1)


def _cholesky_qr_step(z: torch.Tensor, stats: dict,
                      gram64: bool = False) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One Cholesky QR of each Z (batch, n, m): B = Z·U⁻¹ (dtype of z), log|u_ii| (float64, (batch, m))
    and how many entries broke down in the working dtype (0 when it was skipped).

    Breakdowns are redone with a float64 Gram matrix (float32 z), then by Householder QR (counted in
    ``stats``). ``gram64``: factorise every entry in float64 from the start (counted in ``float64_gram``).
    """
    stats["qr_steps"] += z.shape[0]
    if gram64 or z.dtype == torch.float64:
        b, logs, bad = _cholesky_in(z, torch.float64)
        if z.dtype != torch.float64:
            stats["float64_gram"] += z.shape[0]
        broke = 0
    else:
        b, logs, bad = _cholesky_in(z, z.dtype)
        idx = bad.nonzero().flatten()
        broke = idx.numel()
        if broke:
            stats["float64_gram"] += broke
            b[idx], logs[idx], bad64 = _cholesky_in(z[idx], torch.float64)
            bad = torch.zeros_like(bad).index_put_((idx,), bad64)
    idx = bad.nonzero().flatten()
    if idx.numel():
        stats["householder_fallbacks"] += idx.numel()
        q, r = torch.linalg.qr(z[idx])
        b[idx] = q
        logs[idx] = torch.log(torch.diagonal(r, dim1=-2, dim2=-1).abs()).double()
    return b, logs, broke


def _cholesky_in(z: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cholesky QR of each Z with G, U and the solve in ``dtype``: B (dtype of z), log|u_ii| (float64),
    broke down (bool, (batch,); those entries of B and the logs are garbage)."""
    u, bad = _cholesky_factor(z, dtype)
    b = torch.linalg.solve_triangular(u, z.to(dtype), upper=True, left=False).to(z.dtype)
    return b, torch.log(torch.diagonal(u, dim1=-2, dim2=-1).abs()).double(), bad


def _detach(state):
    return tuple(tuple(t.detach() for t in layer) for layer in state)


def reference_spectrum(model: RNNLanguageModel, tokens: torch.Tensor, config: LSConfig | None = None) -> np.ndarray:
    """The straightforward computation, for checking and benchmarks.

    Per-sample autograd Jacobian (``jacrev``), explicit J·Q, ``torch.linalg.qr`` with Q formed,
    sign-fixed; same averaging as :func:`lyapunov_spectrum`. ``layered`` runs the QR on the whole
    J with the layers ordered top first (the exact split is what the engine relies on); with
    ``top``, on each layer's block. Full spectrum unless ``top``.
    """
    cfg = config or LSConfig()
    _check_inputs(model, tokens, cfg)
    dtype = cfg.torch_dtype
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            xs = model.embed(tokens[: cfg.total_steps, : cfg.k].to(next(model.parameters()).device)).to(dtype)
        rows = []
        for b in range(cfg.k):
            step = make_stepper(model, convention=cfg.state, dtype=dtype, method="autograd")
            state = cast_state(model.init_state(1), dtype)
            qs, acc = None, None
            for t in range(cfg.total_steps):
                jac, state = step(state, xs[t, b:b + 1])
                mats = _reference_matrices(jac, cfg)
                if qs is None:
                    qs = [torch.eye(m.shape[0], m.shape[0] if cfg.top is None else min(cfg.top, m.shape[0]),
                                    dtype=dtype, device=xs.device) for m in mats]
                    acc = torch.zeros(sum(q.shape[1] for q in qs), dtype=torch.float64)
                logs = []
                for i, m in enumerate(mats):
                    q, r = torch.linalg.qr(m @ qs[i])
                    d = torch.diagonal(r)
                    qs[i] = q * torch.where(d < 0, -1.0, 1.0).to(dtype)
                    logs.append(torch.log(d.abs()).to("cpu", torch.float64))
                if t >= cfg.warmup:
                    acc += torch.cat(logs)
                state = _detach(state)
            rows.append(acc)
    finally:
        model.train(was_training)
    return _finish(torch.stack(rows), cfg)


def _reference_matrices(jac, cfg: LSConfig) -> list[torch.Tensor]:
    """One sequence's matrices for :func:`reference_spectrum` (see there)."""
    j = jac.dense()[0].detach()
    if cfg.qr == "joint":
        return [j]
    blocks = jac.diagonal_blocks()  # also checks the block lower-triangular structure
    if cfg.top is not None:
        return [blk.dense()[0].detach() for blk in blocks]
    sizes = [blk.n for blk in blocks]
    starts = np.cumsum([0] + sizes[:-1])
    order = torch.cat([torch.arange(s, s + n) for s, n in zip(starts[::-1], sizes[::-1])]).to(j.device)
    return [j[order][:, order]]


def ls_summary(ls: np.ndarray) -> dict:
    """max / mean / variance / min of the finite exponents, and counts of −inf and NaN (Table 3)."""
    fin = ls[np.isfinite(ls)]
    stats = {"max": float(fin.max()), "mean": float(fin.mean()), "variance": float(fin.var()),
             "min": float(fin.min())} if fin.size else {"max": math.nan, "mean": math.nan,
                                                         "variance": math.nan, "min": math.nan}
    stats.update(n=int(ls.size), neg_inf=int(np.isneginf(ls).sum()), nan=int(np.isnan(ls).sum()))
    return stats
