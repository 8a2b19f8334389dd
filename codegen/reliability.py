"""Is a summed 1/n series worth printing? Impossible values are refused, unreliable ones flagged.

The flow's coefficients c[m][k] are right to their stated accuracy at any width; the *values*
kappa_m = sum_k c[m][k] / n^k are a truncated series whose error is estimated by the size of the
last term kept. Where that term is a sizeable part of the sum (L/n of order one, book appendix A),
or the sum is impossible (a negative E[z^2] or Var G), the numbers must not pass without a word.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the last term kept may be at most this part of the value before a warning (a 10 % estimate)
UNRELIABLE = 0.1


@dataclass(frozen=True)
class SeriesCheck:
    impossible: str | None  # a reason to refuse the values, or None
    unreliable: str | None  # a warning, or None


def check_series(coefficients: np.ndarray, widths: np.ndarray, order: int) -> SeriesCheck:
    """Look at every layer l >= 2: ``coefficients[l-1, m, k]`` = c[m][k], ``widths[l-2]`` = n_{l-1}."""
    impossible = unreliable = None
    depth = coefficients.shape[0]
    for l in range(2, depth + 1):
        n = float(widths[l - 2])
        for m in range(1, min(order, 2) + 1):  # kappa_1 and kappa_2 carry two or more terms
            terms = [coefficients[l - 1, m, k] / n**k for k in range(m - 1, order + 1)]
            total = float(sum(terms))
            name = "E[z^2]" if m == 1 else "Var G"
            if impossible is None and (total <= 0 if m == 1 else total < 0):
                impossible = (
                    f"at layer {l} the 1/n series gives {name} = {total:.3g} < 0: the finite-width "
                    f"corrections exceed the leading term at width {n:g} (use wider or fewer layers)"
                )
            if unreliable is None and len(terms) > 1 and total and abs(terms[-1]) > UNRELIABLE * abs(total):
                unreliable = (
                    f"warning: at layer {l} the last term kept (1/n^{order}) is "
                    f"{abs(terms[-1] / total):.0%} of {name.replace('E[z^2]', 'kappa_1')}: the 1/n expansion "
                    f"is unreliable from there on (depth/width = {depth / n:.3g}; see pdlt aspect-ratio)"
                )
    return SeriesCheck(impossible, unreliable)
