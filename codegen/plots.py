"""Figures: the flow against depth, and the phase diagram in the (C_b, C_W) plane.

matplotlib with the Agg backend (no display needed). Files are written atomically.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pdlt.derive.activations import Activation

from .write import default_mode


@dataclass
class Overlay:
    """An asymptotic law drawn over one panel of the flow figure."""

    panel: str  # "K", "V", "G1"
    label: str
    layers: np.ndarray
    values: np.ndarray


def _save(fig, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def MaxNLocator(**kw):  # noqa: N802 - matplotlib's class, imported late like pyplot
    from matplotlib.ticker import MaxNLocator as locator

    return locator(**kw)


def plot_flow(flow, title: str, path: Path, overlays: list[Overlay] | None = None) -> None:
    """K, V/(n K^2) and G{1} against depth (log axes where the data allow), laws overlaid."""
    plt = _pyplot()
    depth = flow.depth
    layers = np.arange(1, depth + 1)
    n_prev = np.concatenate([[np.nan], flow.widths.astype(float)])  # n_{l-1}, undefined at layer 1
    K, V, G1 = flow.K, flow.V, flow.G1
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = V / (n_prev * K**2)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    panels = {
        "K": (axes[0], K, "kernel $K^{(\\ell)}$"),
        "V": (axes[1], ratio, "$V^{(\\ell)} / (n_{\\ell-1} K^2)$"),
        "G1": (axes[2], G1, "NLO metric $G^{\\{1\\}(\\ell)}$"),
    }
    for key, (ax, values, label) in panels.items():
        ax.plot(layers, values, "-", color="C0", lw=2, label="pdlt flow")
        for ov in overlays or []:
            if ov.panel == key:
                ax.plot(ov.layers, ov.values, "--", color="C3", lw=1.5, label=ov.label)
        ax.set_xlabel("layer $\\ell$")
        ax.set_title(label)
        positive = values[np.isfinite(values)]
        if depth >= 20:
            ax.set_xscale("log")
        else:  # whole layers only: fractional ticks crowd and mean nothing
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if positive.size and np.all(positive > 0) and positive.max() / max(positive.min(), 1e-300) > 20:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


# ------------------------------------------------------------------ phase diagram


@dataclass
class PhaseData:
    """g, g' and <sigma'^2> on a grid of K."""

    kernels: np.ndarray
    g: np.ndarray
    dg: np.ndarray
    perp: np.ndarray


def phase_data(module, params: dict | None = None, kernels: np.ndarray | None = None) -> PhaseData:
    """g, g' and <sigma'^2> on a log grid of K from a generated kernel module (exact or checked
    quadrature, microseconds per point)."""
    ks = np.geomspace(1e-3, 1e2, 161) if kernels is None else kernels
    pvals = np.array([float((params or {}).get(p, d)) for p, d in module.PARAMS] or [0.0])
    mu, err, mag = module.workspace()
    g, dg, perp = (np.empty_like(ks) for _ in range(3))
    for j, K in enumerate(ks):
        module.moments(float(K), pvals, False, mu, err, mag)
        g[j], dg[j], perp[j] = mu[1, 0], mu[1, 1], mu[module._PERP, 0]
    return PhaseData(ks, g, dg, perp)


def _label_phases(ax, CB: np.ndarray, CW: np.ndarray, log_chi: np.ndarray) -> None:
    """Name each phase at the grid point deepest inside it (the most extreme log chi_perp), away from
    the frame and the legend (lower right); a phase absent from the window gets no label."""
    cb, cw = CB / CB.max(), (CW - CW.min()) / (CW.max() - CW.min())
    inside = (cb > 0.03) & (cb < 0.3) & (cw > 0.06) & (cw < 0.92)  # the text runs about 0.4 to the right
    for sign, text, color in (
        (-1, "ordered ($\\chi_\\perp < 1$)", "navy"),
        (1, "chaotic ($\\chi_\\perp > 1$)", "darkred"),
    ):
        phase = inside & (sign * log_chi > 0.02)
        if phase.any():
            j = np.argmax(np.where(phase, sign * log_chi, -np.inf))
            ax.text(CB.flat[j], CW.flat[j], text, color=color, ha="left", va="center")


def plot_phase(
    act: Activation, module, path: Path, critical: list[tuple[float, float]] | None = None, params: dict | None = None
) -> PhaseData:
    """chi_perp at the attracting fixed point over the (C_b, C_W) plane, the chi = 1 curves and the
    critical points. Each chi = 1 curve is parametric in K*: C_W = 1/g'(K*), C_b = K* - C_W g(K*)
    (chi_parallel), and C_W = 1/<sigma'^2>, C_b = K* - C_W g(K*) (chi_perp); they meet at criticality."""
    plt = _pyplot()
    data = phase_data(module, params)
    ks, g, dg, perp = data.kernels, data.g, data.dg, data.perp
    cw_par, cb_par = 1 / dg, ks - g / dg
    cw_perp, cb_perp = 1 / perp, ks - g / perp
    cb_max = 1.0 if not critical else max(1.0, 1.6 * max(c for c, _ in critical))
    cw_max = 3.0 if not critical else max(3.0, 1.5 * max(w for _, w in critical))
    cbs = np.linspace(0.0, cb_max, 121)
    cws = np.linspace(0.05, cw_max, 121)
    CB, CW = np.meshgrid(cbs, cws)
    # attracting fixed point by iterating K' = C_b + C_W g(K) with g interpolated in log K
    logk = np.log(ks)

    def g_of(K):
        Kc = np.clip(K, ks[0], ks[-1])
        return np.interp(np.log(Kc), logk, g) * np.where(K < ks[0], K / ks[0], 1.0)

    K = np.ones_like(CB)
    for _ in range(400):
        K = np.minimum(CB + CW * g_of(K), ks[-1])
    chi_perp = CW * np.interp(np.log(np.clip(K, ks[0], ks[-1])), logk, perp)
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    levels = np.linspace(-0.6, 0.6, 25)  # log10 chi_perp: a factor 4 either way saturates
    cf = ax.contourf(CB, CW, np.clip(np.log10(chi_perp), -0.6, 0.6), levels=levels, cmap="coolwarm")
    ax.contour(CB, CW, np.log10(chi_perp), levels=[0.0], colors="dimgray", linewidths=0.8)
    fig.colorbar(cf, ax=ax, label="$\\log_{10} \\chi_\\perp$ at the attracting fixed point")
    ok_par = (cb_par >= 0) & (cb_par <= cb_max) & (cw_par <= cw_max)
    ok_perp = (cb_perp >= 0) & (cb_perp <= cb_max) & (cw_perp <= cw_max)
    ax.plot(cb_par[ok_par], cw_par[ok_par], "k-", lw=1.8, label="$\\chi_\\parallel = 1$")
    ax.plot(cb_perp[ok_perp], cw_perp[ok_perp], "k--", lw=1.8, label="$\\chi_\\perp = 1$")
    for n, (cb, cw) in enumerate(critical or []):
        ax.plot([cb], [cw], "o", ms=9, mfc="gold", mec="k", label="critical point" if n == 0 else None)
    _label_phases(ax, CB, CW, np.log10(chi_perp))
    ax.set_xlim(0, cb_max)
    ax.set_ylim(cws[0], cw_max)
    ax.set_xlabel("$C_b$")
    ax.set_ylabel("$C_W$")
    ax.set_title(f"phase diagram: {act.name}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return data
