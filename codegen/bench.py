"""``pdlt bench``: the generated flow against what one writes by hand, and against Monte Carlo.

(a) generated numba flow (warm), per layer, for every shipped activation;
(b) the same recursion by hand: the sympy derivation lambdified, Gaussian expectations by
    ``scipy.integrate.quad`` (split at breakpoints), per layer, for tanh;
(c) Monte Carlo of real networks: time to estimate the output metric's variance (the four-point
    vertex, V/n) to 1 % relative standard error, for tanh;
(d) start-up in a fresh process: import + first 1000-layer flow, with the numba cache cold and warm,
    and the peak resident memory of that process.
Figures depend on the machine; docs/benchmarks.md records one run with its command.
``--kernels`` runs (e) instead: N x N kernel matrices (``bench_kernels.py``).
``--quick`` (a smoke run, about 10 s) does the same with less: (a) for tanh and ReLU only, best of 3;
(b) over 10 layers; (c) batches of 256 networks for about half a second (it does not reach 1 %).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def _best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# critical initializations where the book gives them (K* = 0 class, scale-invariant class, the
# half-stable points of GELU and SWISH); otherwise an ordered phase with a fixed point K* > 0
BENCH_HYPER = {
    "tanh": (0.0, 1.0),
    "sin": (0.0, 1.0),
    "erf": (0.0, 0.7853981633974483),
    "relu": (0.0, 2.0),
    "leaky_relu": (0.0, 2.0 / (1 + 0.01**2)),
    "linear": (0.0, 1.0),
    "abs": (0.0, 1.0),
    "gelu": (0.17292239, 1.98305826),
    "swish": (0.55514317, 1.98800468),
}


QUICK_ACTIVATIONS = ("relu", "tanh")


def bench_generated(depth: int, repeat: int, names: tuple[str, ...] | None = None) -> dict:
    from pdlt import generated

    out = {}
    for name in sorted(names or generated.SHIPPED):
        mod = generated.load(name)
        mod.flow(3, width=64)  # compile or load from the numba cache
        widths = np.full(depth - 1, 64.0)
        cb, cw = np.zeros(mod.ORDER + 1), np.zeros(mod.ORDER + 1)
        # an ordered phase with a fixed point K* > 0 (C_b = 0.1), Kaiming for ReLU-like units
        cb[0], cw[0] = BENCH_HYPER.get(name, (0.1, 1.0))
        params = np.array([d for _, d in mod.PARAMS] or [0.0])
        coeffs = np.zeros((depth, mod.ORDER + 2, mod.ORDER + 1))
        errors = np.zeros(depth)
        raw = _best_of(lambda: mod.flow_coefficients(widths, cb, cw, 1.0, params, False, coeffs, errors), repeat)
        checked = _best_of(lambda: mod.flow_coefficients(widths, cb, cw, 1.0, params, True, coeffs, errors), repeat)
        wrapped = _best_of(lambda: mod.flow(depth, width=64, C_b=cb[0], C_W=cw[0], check=False), repeat)
        out[name] = {
            "order": mod.ORDER,
            "depth": depth,
            "C_b": float(cb[0]),
            "C_W": float(cw[0]),
            "seconds": raw,
            "seconds_checked": checked,
            "seconds_wrapper": wrapped,
            "per_layer_us": raw / depth * 1e6,
        }
    return out


def bench_by_hand(depth: int) -> dict:
    """The sympy derivation, lambdified, with scipy quadrature for every expectation."""
    import sympy as sp
    from scipy import integrate

    from pdlt.derive import activations
    from pdlt.derive import notation as nt
    from pdlt.derive.expectations import hermite_weight
    from pdlt.derive.recursion import cumulant_derivatives, derive_step, moment_derivatives

    order = 2
    act = activations.get("tanh")
    step = derive_step(order, renormalized=False)
    pairs = moment_derivatives(order)
    s_keys = cumulant_derivatives(order)
    mu_syms = [nt.mu(a, i) for a, i in pairs]
    s_funcs = {key: sp.lambdify(mu_syms, step.cumulants[key], "math") for key in s_keys}
    state_keys = step.state_keys
    c_syms = [nt.c(m, k) for m, k in state_keys if (m, k) != (1, 0)]
    s_syms = [nt.s(m, j) for m, j in s_keys]
    args = [*c_syms, *s_syms, nt.r, nt.C_b, nt.C_W]
    new = {key: sp.lambdify(args, step.new_state[key], "math") for key in state_keys}
    sigma = sp.lambdify(nt.z, act.expr, "math")
    weights = {i: sp.lambdify((nt.z, nt.K), hermite_weight(i), "math") for i in range(2 * order + 1)}

    def mu_at(K: float) -> list[float]:
        norm = 1.0 / np.sqrt(2 * np.pi * K)
        return [
            integrate.quad(
                lambda z: sigma(z) ** (2 * a) * weights[i](z, K) * np.exp(-z * z / (2 * K)) * norm,
                -np.inf,
                np.inf,
                epsabs=1e-13,
                epsrel=1e-12,
                limit=200,
            )[0]
            for a, i in pairs
        ]

    state = {key: 0.0 for key in state_keys}
    state[(1, 0)] = 1.0
    t0 = time.perf_counter()
    for _ in range(1, depth):
        with warnings.catch_warnings():  # quad's roundoff notices on the high derivatives
            warnings.simplefilter("ignore")
            mus = mu_at(state[(1, 0)])
        s_vals = [s_funcs[key](*mus) for key in s_keys]
        vals = [state[key] for key in state_keys if key != (1, 0)] + s_vals + [1.0, 0.0, 1.0]
        state = {key: new[key](*vals) for key in state_keys}
    seconds = time.perf_counter() - t0
    return {
        "activation": "tanh",
        "order": order,
        "layers": depth - 1,
        "seconds": seconds,
        "per_layer_us": seconds / (depth - 1) * 1e6,
        "K_last": float(state[(1, 0)]),
    }


def bench_montecarlo(depth: int, width: int, seconds_budget: float, seed: int = 0, batch: int = 2048) -> dict:
    """Sample tanh networks at criticality until the variance of the output metric is known to 1 %."""
    rng = np.random.default_rng(seed)
    samples: list[np.ndarray] = []
    t0 = time.perf_counter()
    rel = float("inf")
    while rel > 0.01 and time.perf_counter() - t0 < seconds_budget:
        x = np.ones(width)  # |x|^2/n_0 = 1 with n_0 = width
        w = rng.standard_normal((batch, width, width)) / np.sqrt(width)
        z = w @ x  # layer 1
        for _ in range(2, depth):
            w = rng.standard_normal((batch, width, width)) / np.sqrt(width)
            z = np.einsum("bij,bj->bi", w, np.tanh(z))
        g = np.mean(np.tanh(z) ** 2, axis=1)  # C_W = 1, C_b = 0: the metric G(depth) of each network
        samples.append(g)
        allg = np.concatenate(samples)
        var = allg.var(ddof=1)
        m4 = np.mean((allg - allg.mean()) ** 4)
        se_var = np.sqrt(max(m4 - var**2, 0.0) / allg.size)
        rel = se_var / var
    elapsed = time.perf_counter() - t0
    n = sum(s.size for s in samples)
    return {
        "activation": "tanh",
        "depth": depth,
        "width": width,
        "networks": n,
        "seconds": elapsed,
        "relative_standard_error": float(rel),
        "reached_1_percent": bool(rel <= 0.01),
    }


_STARTUP = (
    "import time; t=time.perf_counter(); from pdlt.generated import tanh; tanh.flow(1000, width=64); "
    "print(time.perf_counter()-t)"
)


def bench_startup() -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold", "warm"):
            t0 = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _STARTUP + "; import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)",
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            wall = time.perf_counter() - t0
            inner, rss = proc.stdout.split()
            out[label] = {
                "process_seconds": wall,
                "import_and_flow_seconds": float(inner),
                "peak_rss_mib": int(rss) / 1024,
            }
    return out


FOUR_CASES = (  # (N, tensors, depth, tolerance): the table of docs/ntk-fluctuations.md, "Many inputs"
    (6, "all", 10, 1e-8),
    (8, "all", 10, 1e-8),
    (16, "all", 10, 1e-6),
    (32, "V", 5, 1e-8),
)


def bench_four(quick: bool) -> list[dict]:
    """The four-index tensors on N random inputs in R^10 (tanh at criticality): seconds (warm: the derivation and
    the numba kernels loaded first) and the error bound at the last layer."""
    from pdlt.generated import load
    from pdlt.runtime.kernels import FOUR

    tanh = load("tanh")
    tanh.kernel(np.eye(3), 2, tensors=("V",), tolerance=1e-3)  # warm-up
    out = []
    for N, names, depth, tol in ((4, "V", 3, 1e-8),) if quick else FOUR_CASES:
        x = np.random.default_rng(0).normal(size=(N, 10))
        tensors = FOUR[1:] if names == "all" else (names,)
        start = time.perf_counter()
        r = tanh.kernel(x, depth, C_b=0.0, C_W=1.0, tensors=("K", *tensors), layers=[depth], tolerance=tol)
        seconds = time.perf_counter() - start
        out.append({"N": N, "tensors": names, "depth": depth, "tolerance": tol, "seconds": seconds,
                    "error": float(r.four_error[-1])})  # fmt: skip
    return out


def main(quick: bool = False, as_json: bool = False, out: str | None = None, kernels: bool = False,
         sizes: tuple[int, ...] | None = None, four: bool = False) -> int:  # fmt: skip
    if four:
        rows = bench_four(quick)
        if out:
            Path(out).write_text(json.dumps(rows, indent=1))
        lines = [f"N = {r['N']:3d}, {r['tensors']:>3s}, depth {r['depth']:2d}, tolerance {r['tolerance']:g}: "
                 f"{r['seconds']:6.1f} s, error bound {r['error']:.1e}" for r in rows]  # fmt: skip
        print(json.dumps(rows, indent=1) if as_json else "\n".join(lines))
        return 0
    if kernels:
        from .bench_kernels import bench_kernels, report

        results = bench_kernels(sizes or ((300,) if quick else (1000, 3000)))
        if out:
            Path(out).write_text(json.dumps(results, indent=1))
        print(json.dumps(results, indent=1) if as_json else "\n".join(report(results)))
        return 0
    depth = 1000
    results: dict = {"quick": quick}
    results["generated"] = bench_generated(depth, repeat=3 if quick else 20, names=QUICK_ACTIVATIONS if quick else None)
    results["by_hand"] = bench_by_hand(10 if quick else 100)
    tanh = results["generated"]["tanh"]
    results["speedup_vs_by_hand"] = results["by_hand"]["per_layer_us"] / tanh["per_layer_us"]
    results["montecarlo"] = (
        bench_montecarlo(10, 64, seconds_budget=0.5, batch=256)
        if quick
        else bench_montecarlo(10, 64, seconds_budget=120)
    )
    results["startup"] = bench_startup()
    if out:
        Path(out).write_text(json.dumps(results, indent=1))
    if as_json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"(a) generated numba flow, {depth} layers, width 64, warm (best of repeats):")
    print(
        f"    {'activation':<11} {'C_b':>6} {'C_W':>6} {'total ms':>9} {'us/layer':>9} "
        f"{'checked ms':>11} {'wrapper ms':>11}"
    )
    for name, r in results["generated"].items():
        print(
            f"    {name:<11} {r['C_b']:>6.3f} {r['C_W']:>6.3f} {r['seconds'] * 1e3:>9.3f} {r['per_layer_us']:>9.3f} "
            f"{r['seconds_checked'] * 1e3:>11.3f} {r['seconds_wrapper'] * 1e3:>11.3f}"
        )
    bh = results["by_hand"]
    print(
        f"(b) by hand (sympy lambdify + scipy quad), tanh order 2: {bh['per_layer_us'] / 1e3:.2f} ms/layer "
        f"over {bh['layers']} layers; generated is {results['speedup_vs_by_hand']:.0f}x faster"
    )
    mc = results["montecarlo"]
    print(
        f"(c) Monte Carlo, tanh depth {mc['depth']} width {mc['width']}: {mc['networks']} networks in "
        f"{mc['seconds']:.2f} s for a {mc['relative_standard_error'] * 100:.2f} % standard error on Var G(L)"
    )
    for label, r in results["startup"].items():
        print(
            f"(d) fresh process, numba cache {label}: import + 1000-layer tanh flow "
            f"{r['import_and_flow_seconds']:.3f} s (process {r['process_seconds']:.2f} s), "
            f"peak RSS {r['peak_rss_mib']:.0f} MiB"
        )
    return 0
