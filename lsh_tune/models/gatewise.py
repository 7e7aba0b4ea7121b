"""When the closed-form Jacobians multiply gate by gate, and when they form their blocks first."""
from __future__ import annotations

__all__ = ["GATEWISE_BELOW"]

#: J·Q with fewer columns than this multiplies Q by the stacked gate weights (4H × H for an
#: LSTM, 2H × H per RHN highway layer) and combines the gates; from this many columns on,
#: forming the H × H blocks first is faster (measured on CPU).
GATEWISE_BELOW = 8
