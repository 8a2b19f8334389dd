"""Representation learning against seed-to-seed fluctuations, as depth-to-width grows (issue 8, item 5).

At criticality, with the book's learning rates (the equivalence principle, 9.94-9.96), every normalized
finite-width tensor of the output grows like r = L/n (book 9.26-9.27, 11.65, ∞.38). ``tradeoff`` computes them
from the generated kernels for each depth L at width n:

- fluctuations: Var[H_ii]/Theta^2 = (A + 2B)/(n Theta^2) (book 8.82), the NTK's spread from seed to seed, and
  the preactivations' non-Gaussianity V/(n K^2);
- representation learning: the dNTK's P/(n Theta^2), Q/(n Theta^2) (11.62) and, for a smooth sigma, the ddNTKs'
  R K/(n Theta^3), S K/(n Theta^3), T K/(n Theta^3) (∞.19-∞.22): how much the NTK moves while the network learns;

with Monte Carlo points from sampled networks (``pdlt.codegen.sample_ntk``) over them, and appendix A's optimal
aspect ratio r* = 4/((20 + 3 n_L) nu) (A.73) marked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pdlt.derive.activations import Activation, ActivationError
from pdlt.derive.criticality import critical_points
from pdlt.derive.errors import UserError

from .analysis import start_norm, usable_point
from .arguments import RATES  # noqa: F401 (re-exported)

FLUCTUATIONS = ("ntk_variance", "vertex")
LEARNING = ("P", "Q", "R", "S", "T")
LABELS = {
    "ntk_variance": "(A + 2B)/(n Θ²): NTK variance",
    "vertex": "V/(n K²): vertex",
    "P": "P/(n Θ²) (dNTK)",
    "Q": "Q/(n Θ²) (dNTK)",
    "R": "R K/(n Θ³) (ddNTK)",
    "S": "S K/(n Θ³) (ddNTK)",
    "T": "T K/(n Θ³) (ddNTK)",
}


@dataclass
class Tradeoff:
    activation: str
    klass: str
    width: int
    outputs: int
    C_b: float
    C_W: float
    rates: str
    depths: list[int]
    theory: dict[str, list[float]]  # quantity -> one value per depth (NaN where not defined)
    montecarlo: dict[str, list] = field(default_factory=dict)  # quantity -> [[depth, mean, se], ...]
    nu: float = math.nan
    r_star: float = math.nan

    @property
    def ratios(self) -> list[float]:
        return [d / self.width for d in self.depths]

    def as_dict(self) -> dict:
        return {
            "activation": self.activation,
            "class": self.klass,
            "width": self.width,
            "outputs": self.outputs,
            "C_b": self.C_b,
            "C_W": self.C_W,
            "rates": self.rates,
            "depths": self.depths,
            "r": self.ratios,
            "theory": {k: [None if math.isnan(v) else v for v in vals] for k, vals in self.theory.items()},
            "montecarlo": self.montecarlo,
            "nu": None if math.isnan(self.nu) else self.nu,
            "r_star": None if math.isnan(self.r_star) else self.r_star,
        }


def learning_rates(klass: str, exponents: dict, depth: int, rates: str, lb: float, lw: float):
    """(lambda_b, lambda_W) per layer 1..depth: "equivalence" is (9.94) for scale-invariant activations and (9.95)
    for the K* = 0 class (p_perp from the criticality report); "uniform" is lambda~ at every layer."""
    ell = np.arange(1, depth + 1, dtype=float)
    if rates == "uniform":
        return np.full(depth, lb), np.full(depth, lw)
    if klass == "scale-invariant":
        return np.full(depth, lb / depth), np.full(depth, lw / depth)
    if klass == "K*=0":
        p = exponents.get("p_perp") or 1.0
        return lb * (1 / ell) ** p * depth ** (p - 1), lw * (depth / ell) ** (p - 1)
    raise UserError(f"the equivalence-principle learning rates are the book's for the scale-invariant and K* = 0 "
                    f"classes; this activation is {klass}: choose the rates (uniform, or one per layer)")  # fmt: skip


def tradeoff(act: Activation, module, width: int, depths: list[int], outputs: int = 1, rates: str = "equivalence",
             lambda_b: float = 1.0, lambda_W: float = 1.0, samples: int = 0, seed: int = 0,
             progress=None) -> Tradeoff:  # fmt: skip
    """The normalized tensors of the output for each depth at width n (and Monte Carlo points with ``samples``
    networks at up to four of the depths)."""
    report = critical_points(act)
    point = usable_point(report)
    if point is None:
        raise UserError(f"{act.name} has no critical initialization ({report.reason}): the trade-off is drawn there")
    params = {s.name: float(v) for s, v in act.params}
    norm = start_norm(point)
    x = np.full((1, 1), math.sqrt(norm))
    smooth = not module.KINKS
    tensors = ("Theta", "V", "A", "B", "P", "Q", *(("R", "S", "T") if smooth else ()))
    theory: dict[str, list[float]] = {k: [] for k in (*FLUCTUATIONS, *LEARNING)}
    n = float(width)
    for L in depths:
        lb, lw = learning_rates(report.klass, report.exponents, L, rates, lambda_b, lambda_W)
        r = module.kernel(x, L, C_b=point.C_b, C_W=point.C_W, lambda_b=lb, lambda_W=lw, tensors=tensors, layers=[L],
                          tolerance=1e-8, **params)  # fmt: skip
        K, H = float(r.K[0, 0, 0]), float(r.Theta[0, 0, 0])

        def out(name, r=r):
            return float(getattr(r, name).ravel()[0])

        theory["ntk_variance"].append((out("A") + 2 * out("B")) / (n * H * H))
        theory["vertex"].append(out("V") / (n * K * K))
        theory["P"].append(out("P") / (n * H * H))
        theory["Q"].append(out("Q") / (n * H * H))
        for name in ("R", "S", "T"):
            theory[name].append(out(name) * K / (n * H**3) if smooth else math.nan)
    nu = report.nu
    if nu is None:
        from .analysis import nu_from_flow

        nu = nu_from_flow(module, point, params=params)
    result = Tradeoff(act.name, report.klass, width, outputs, point.C_b, point.C_W, rates, list(depths), theory,
                      nu=float(nu), r_star=4 / ((20 + 3 * outputs) * nu) if nu else math.nan)  # fmt: skip
    if samples:
        result.montecarlo = _montecarlo(act, report, point, norm, width, depths, rates, lambda_b, lambda_W, samples,
                                        seed, progress)  # fmt: skip
    return result


def _vectorized_derivatives(act: Activation):
    """(sigma, sigma', sigma'') on numpy arrays; sigma'' = 0 where sigma' has a kink (autodiff's a.e. value)."""
    from .check import _vectorized

    fns, current = [_vectorized(act)], act
    for _ in range(2):
        try:
            current = current.derivative()
            fns.append(_vectorized(current))
        except ActivationError:  # a kink: the derivative is a point mass, zero almost everywhere
            fns.append(lambda z: np.zeros_like(z))
    if not act.breakpoints:  # smooth: sigma''' too, for the ddNTKs
        fns.append(_vectorized(current.derivative()))
    return tuple(fns)


def _montecarlo(act, report, point, norm, width, depths, rates, lb, lw, samples, seed, progress) -> dict:
    from .sample_ntk import estimators, jackknife, pair_statistics, sample

    chosen = sorted({depths[i] for i in np.linspace(0, len(depths) - 1, min(4, len(depths))).round().astype(int)})
    fns = _vectorized_derivatives(act)
    names = ("ntk_variance", "P", *(("R", "S", "T") if len(fns) > 3 else ()))
    out: dict[str, list] = {name: [] for name in names}
    for k, L in enumerate(chosen):
        if progress:
            progress(f"sampling {samples} networks of depth {L} at width {width} ({k + 1}/{len(chosen)})")
        lbs, lws = learning_rates(report.klass, report.exponents, L, rates, lb, lw)
        rng = np.random.default_rng([seed, L, width])
        chunk = max(1, min(samples, 2_000_000 // (width * width * max(L, 1))))
        parts = [pair_statistics(sample(fns, width, min(chunk, samples - i), point.C_b, point.C_W, lbs, lws, norm,
                                        rng)) for i in range(0, samples, chunk)]  # fmt: skip
        data = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        est = estimators(width)
        n = float(width)

        def variance(a, est=est, n=n):
            return (est["A"](a) + 2 * est["B"](a)) / (n * est["H"](a) ** 2)

        def dntk(a, est=est, n=n):
            return est["P"](a) / (n * est["H"](a) ** 2)

        def ddntk(a, est=est, n=n, name="R"):  # R K / (n Theta^3), K = E[z^2] = E[G]
            return est[name](a) * a["G"].mean() / (n * est["H"](a) ** 3)

        fs = {"ntk_variance": variance, "P": dntk, **{k: (lambda a, k=k: ddntk(a, name=k)) for k in ("R", "S", "T")}}
        for name in names:
            f = fs[name]
            mean, se = jackknife(data, f, groups=min(50, max(samples // 20, 2)))
            out[name].append([L, mean, se])
    return out


def plot(result: Tradeoff, path) -> None:
    """Two panels against r = L/n: fluctuations, and representation learning; r* marked on both."""
    from .plots import _pyplot, _save

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    r = np.array(result.ratios)
    for ax, names, title in ((axes[0], FLUCTUATIONS, "seed-to-seed fluctuations"),
                             (axes[1], LEARNING, "representation learning")):  # fmt: skip
        for name in names:
            y = np.array(result.theory[name], dtype=float)
            if np.all(np.isnan(y)) or np.all(y == 0):
                continue
            (line,) = ax.plot(r, np.abs(y), marker=".", label=LABELS[name] + ("" if np.all(y >= 0) else ", |.|"))
            for L, mean, se in result.montecarlo.get(name, []):
                ax.errorbar([L / result.width], [abs(mean)], yerr=[2 * se], fmt="o", color=line.get_color(),
                            mfc="none", capsize=3)  # fmt: skip
        if math.isfinite(result.r_star):
            ax.axvline(result.r_star, color="0.4", ls="--", lw=1, label=f"r* = {result.r_star:.3g} (A.73)")
        ax.set_xlabel("r = L / n")
        ax.set_title(title)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{result.activation} at criticality (C_b = {result.C_b:g}, C_W = {result.C_W:.4g}), width "
                 f"{result.width}, {result.rates} learning rates; circles: sampled networks (±2 SE)")  # fmt: skip
    _save(fig, path)
    plt.close(fig)
