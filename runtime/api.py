"""The Python side of the runtime: input checks, ``flow``, ``two_input_flow`` and ``Flow``.

A generated module builds one :class:`Module` from its constants and derived callbacks and exports its
``flow``, ``two_input_flow`` and ``workspace``; their behaviour, messages and JSON are the same for
every activation, so they are written here once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import numerics
from .errors import FlowError

_FLOW_DOC = """Iterate the order-{order} recursion for {name} through ``depth`` layers.

Give either ``width`` (all hidden layers) or ``widths`` (n_1, ..., n_{{depth-1}}).
``input_norm2`` is |x|^2/n_0, so that K(1) = C_b + C_W |x|^2/n_0. ``C_b_n`` and ``C_W_n``
are optional 1/n pieces of the hyperparameters, C = C^{{0}} + C^{{1}}/n_l + ... (book 5.138).
Keyword parameters of the activation: {params}.
With ``check`` (the default) every quadrature carries an error estimate, at twice the cost;
FlowError is raised on bad input or when an estimated relative error exceeds ``tolerance``
(a diverging Gaussian expectation gives an infinite estimate).
Returns a :class:`pdlt.runtime.api.Flow`.
"""

_TWO_INPUT_DOC = """Two inputs x_pm = x_0 pm dx/2 to second order in dx at infinite width (book 5.46-5.48), for {name}.

``input_norm2`` = |x_0|^2/n_0, ``input_dot`` = x_0.dx/n_0, ``input_delta2`` = |dx|^2/n_0, so that
K00(1) = C_b + C_W |x_0|^2/n_0, dK[1](1) = C_W x_0.dx/n_0 and ddK[2](1) = C_W |dx|^2/(4 n_0).
Returns a dict of arrays over layers: K00, dK1, ddK2, chi_parallel, chi_perp, h, and ddK0, the
second-order shift of the mean kernel K_[0] = K00 + ddK0 (0 at layer 1), so that to second order in dx
K_{{++}} = K00 + ddK0 + dK1 + ddK2, K_{{--}} = K00 + ddK0 - dK1 + ddK2 and K_{{+-}} = K00 + ddK0 - ddK2.
"""

_KERNEL_DOC = """The infinite-width NNGP kernel K and NTK Theta of {name} for N inputs, layer by layer (book ch. 4, 8).

``inputs`` is an (N, n_0) array. ``C_b``, ``C_W``, ``lambda_b``, ``lambda_W`` take one number or one per
layer 1..depth; ``lambda_b`` and ``lambda_W`` default to ``C_b`` and ``C_W``, which is the NTK of
neural-tangents' ``Dense(W_std=sqrt(C_W), b_std=sqrt(C_b), parameterization='ntk')``.
``parametrization="standard"`` with ``widths`` (n_1..n_(L-1)) is plain gradient descent on the same network,
lambda_b = 1 and lambda_W = n_(l-1), which is neural-tangents' ``parameterization='standard'``. ``layers`` picks the
stored layers (default all), ``tensors`` is a subset of ("K", "Theta", "G"). "G" is the finite-width mean kernel to
``order`` (1 or 2) in 1/n: E[G_ab(l)] = sum_k G[k]_ab / n_(l-1)^k; ``widths`` (n_1..n_(L-1)) enter it through
their ratios only (equal widths by default). ``progress(done, total)`` is called
as blocks of pairs finish; before them, with four-index tensors on three or more inputs, after each layer of
those, as ``progress(done, total, "layers")`` where the callable takes a third argument. ``out`` (a .npz file
or a .zarr store) is written atomically; with a .zarr store
the result's K and Theta are zarr arrays and the matrices never need to fit in memory. ``scheduler``
(a dask.distributed address, or "local") computes blocks of ``chunk_size`` x ``chunk_size`` pairs on
that cluster, with results identical to the single-process run. Keyword parameters of the activation: {params}.
FlowError is raised on bad input, or when an expectation's relative error bound exceeds ``tolerance``.
Returns a :class:`pdlt.runtime.kernels.KernelMatrices` (arrays of shape (stored layers, N, N)).
"""

TWO_INPUT_FIELDS = ("K00", "dK1", "ddK2", "chi_parallel", "chi_perp", "h", "ddK0")


class Pieces(NamedTuple):
    """A module's derived numba functions, with the signatures of pdlt.runtime.numerics."""

    exact: Callable  # EXACT: the closed-form expectations
    integrands: Callable  # INTEGRANDS: the quadrature integrands at given nodes
    cumulants: Callable  # CUMULANTS: cumulants of sigma^2 from the moments
    step: Callable  # STEP: one layer of the single-input flow
    susceptibilities: Callable  # SUSCEPTIBILITIES: chi_parallel, chi_perp, h
    delta_step: Callable  # DELTA_STEP: one layer of the two-input delta expansion
    values: Callable  # VALUES: sigma on a grid (the Mehler series of kernel matrices)
    dvalues: Callable  # VALUES: sigma' on a grid (the NTK sector's expectations)
    d2values: Callable  # VALUES: sigma'' on a grid (NaN where sigma' jumps)
    d3values: Callable  # VALUES: sigma''' on a grid (NaN where sigma'' jumps)
    jet: Callable  # VALUES: sigma and its first three derivatives on a grid in one pass (out: 4 count values)
    pair: Callable  # PAIR: closed-form pair expectations at an angle (empty without a closed form)


@dataclass(frozen=True)
class Module:
    """One generated module as the runtime sees it: its constants, its derived numba functions and the
    description arrays (dims, qcount, rule, gl, breaks) of pdlt.runtime.numerics.

    The entry points below run the runtime's numba algorithms with those functions; they are what a
    generated module exports as ``moments``, ``cumulants``, ``step``, ``flow_coefficients``,
    ``susceptibilities`` and ``two_input_coefficients``. Each call from Python costs about 40 us of
    dispatch per callback it passes on top of the work (numba hands them over as first-class
    functions): 0.15-0.3 ms for ``flow_coefficients``, whatever the depth.
    Arrays are float64 and C-contiguous (``workspace()`` makes mu, err, mag and s).
    """

    module: str  # import name of the generated module
    name: str
    order: int
    params: tuple[tuple[str, float], ...]
    state: tuple[tuple[int, int, str], ...]
    has_perp: bool  # sigma' exists (sigma does not jump), so chi_perp and h do
    pair_exact: bool  # the pair expectations of kernel matrices have closed forms (PAIR), else a Mehler series
    pieces: Pieces
    description: tuple[np.ndarray, ...]  # dims, qcount, rule, gl, breaks
    kinks: tuple[float, ...] = ()  # where sigma or a derivative jumps (z): Hermite coefficients integrate piecewise

    def moments(self, K, params, check, mu, err, mag) -> None:
        """mu[a, i] = d^i/dK^i <sigma^(2a)>_K; err[a, i] estimates its absolute error and mag[a, i] the
        size of what was summed (with ``check`` only); row _PERP holds d^i/dK^i <sigma'^2>_K."""
        p = self.pieces
        numerics.moments(p.exact, p.integrands, *self.description, float(K), params, bool(check), True, mu, err, mag)

    def cumulants(self, mu, s) -> None:
        """s[m, j] = d^j/dK^j of the m-th cumulant of sigma(z)^2 under z ~ N(0, K)."""
        numerics.cumulants(self.pieces.cumulants, self.description[0], mu, s)

    def step(self, c, s, cb, cw, r, out) -> None:
        """One layer: c (layer l) -> out (layer l+1); cb[k], cw[k] are the 1/n_l^k parts of C_b, C_W
        (book 5.138-5.139) and r = n_l / n_{l-1}."""
        numerics.step(self.pieces.step, self.description[0], c, s, cb, cw, float(r), out)

    def flow_coefficients(self, widths, cb, cw, input_norm2, params, check, coeffs, errors) -> None:
        """coeffs[l-1] = the state of layer l = 1..depth (widths[j] = n_{j+1}); errors[l-1] the largest
        relative error estimate of the expectations used to reach it (see pdlt.runtime.numerics)."""
        p = self.pieces
        numerics.flow_coefficients(p.exact, p.integrands, p.cumulants, p.step, *self.description, widths, cb, cw,
                                   float(input_norm2), params, bool(check), coeffs, errors)  # fmt: skip

    def susceptibilities(self, K, C_W, params, out) -> None:
        """out = (chi_parallel, chi_perp, h) at kernel K (book 5.50-5.52), infinite width."""
        p = self.pieces
        numerics.susceptibilities(p.exact, p.integrands, p.susceptibilities, *self.description, float(K), float(C_W),
                                  params, out)  # fmt: skip

    def two_input_coefficients(self, C_b, C_W, K00, dK1, ddK2, params, out) -> None:
        """out[l-1] = (K00, dK[1], ddK[2], chi_parallel, chi_perp, h, ddK[0]), book (5.46)-(5.52), layer by layer."""
        p = self.pieces
        scalars = (float(C_b), float(C_W), float(K00), float(dK1), float(ddK2))
        numerics.two_input_coefficients(p.exact, p.integrands, p.susceptibilities, p.delta_step, *self.description,
                                        *scalars, params, out)  # fmt: skip

    @property
    def top(self) -> int:
        return self.order + 1

    @property
    def shape(self) -> tuple[int, int]:
        dims = self.description[0]
        return int(dims[numerics.NROWS]), int(dims[numerics.MAX_I]) + 1

    def workspace(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Zeroed arrays (mu, err, mag) of the shape ``moments`` needs; s for ``cumulants`` has it too."""
        return np.zeros(self.shape), np.zeros(self.shape), np.zeros(self.shape)

    def param_values(self, params: dict) -> np.ndarray:
        unknown = set(params) - {p for p, _ in self.params}
        if unknown:
            known = [p for p, _ in self.params]
            raise FlowError(f"unknown parameter(s) {sorted(unknown)} for {self.name}; known: {known}")
        return np.array([float(params.get(p, d)) for p, d in self.params] or [0.0])

    def entry_points(self) -> tuple[Callable, ...]:
        """What a generated module exports: moments, cumulants, step, flow_coefficients,
        susceptibilities, two_input_coefficients, workspace, flow, two_input_flow and kernel."""
        flow, two_input_flow, kernel = self.bind()
        return (self.moments, self.cumulants, self.step, self.flow_coefficients, self.susceptibilities,
                self.two_input_coefficients, self.workspace, flow, two_input_flow, kernel)  # fmt: skip

    def bind(self) -> tuple[Callable, Callable, Callable]:
        """The module's ``flow``, ``two_input_flow`` and ``kernel``, documented for this activation."""

        def flow(depth, width=None, widths=None, C_b=0.0, C_W=1.0, input_norm2=1.0, C_b_n=(), C_W_n=(),
                 tolerance=1e-10, check=True, **params):  # fmt: skip
            return run_flow(self, depth, width, widths, C_b, C_W, input_norm2, C_b_n, C_W_n, tolerance, check, params)

        def two_input_flow(depth, C_b=0.0, C_W=1.0, input_norm2=1.0, input_dot=0.0, input_delta2=1e-4, **params):
            return run_two_inputs(self, depth, C_b, C_W, input_norm2, input_dot, input_delta2, params)

        def kernel(inputs, depth, C_b=0.0, C_W=1.0, lambda_b=None, lambda_W=None, layers=None, tensors=("K", "Theta"),
                   tolerance=1e-10, progress=None, out=None, scheduler=None, chunk_size=None, parametrization="ntk",
                   widths=None, order=1, **params):  # fmt: skip
            from .kernels import kernel_matrices

            return kernel_matrices(self, inputs, depth, C_b, C_W, lambda_b, lambda_W, layers, tensors, tolerance,
                                   progress, out, scheduler, chunk_size, parametrization, widths, order,
                                   **params)  # fmt: skip

        names = ", ".join(p for p, _ in self.params) or "none"
        flow.__doc__ = _FLOW_DOC.format(order=self.order, name=self.name, params=names)
        two_input_flow.__doc__ = _TWO_INPUT_DOC.format(name=self.name)
        kernel.__doc__ = _KERNEL_DOC.format(name=self.name, params=names)
        for fn in (flow, two_input_flow, kernel):
            fn.__module__, fn.__qualname__ = self.module, fn.__name__
        return flow, two_input_flow, kernel


def check_positive(name: str, value: float, strict: bool = True) -> None:
    if not math.isfinite(value) or (value <= 0 if strict else value < 0):
        raise FlowError(f"{name} must be {'> 0' if strict else '>= 0'} and finite, got {value}")


def check_depth(depth) -> None:
    if not isinstance(depth, (int, np.integer)) or depth < 1:
        raise FlowError(f"depth must be an integer >= 1, got {depth!r}")


def hidden_widths(depth: int, width, widths) -> list:
    """n_1..n_{L-1} from ``width`` (all alike) or ``widths``, checked."""
    if (width is None) == (widths is None):
        if depth == 1 and width is None and widths is None:
            widths = []
        else:
            raise FlowError("give exactly one of width and widths")
    if widths is None:
        widths = [width] * (depth - 1)
    widths = [int(n) if float(n).is_integer() else n for n in widths]
    if len(widths) != depth - 1:
        raise FlowError(f"widths needs depth - 1 = {depth - 1} values (n_1..n_(L-1)), got {len(widths)}")
    for n in widths:
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise FlowError(f"widths must be integers >= 1, got {n!r}")
    return widths


def hyper_parts(order: int, leading: float, pieces) -> np.ndarray:
    """[C^{0}, C^{1}, ..., C^{order}]: the hyperparameter's 1/n pieces beyond ``order`` are dropped."""
    out = np.zeros(order + 1)
    out[0] = float(leading)
    for k, v in enumerate(pieces, start=1):
        if k <= order:
            out[k] = float(v)
    return out


def available_memory() -> int | None:
    """Bytes of memory available now (Linux and most Unix), or None where the system does not say."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def check_memory(depth: int, mod: Module) -> None:
    """Refuse, before allocating, a depth whose arrays would not fit: the coefficients, and the summed
    values and copies a caller makes of them (three arrays of depth x (p + 2) x (p + 1) doubles)."""
    need = 3 * 8 * depth * (mod.top + 1) * (mod.order + 1)
    have = available_memory()
    if have is not None and need > have // 2:
        raise FlowError(
            f"depth {depth} needs about {need / 2**30:.1f} GiB for the flow of {mod.name} at order {mod.order}, "
            f"more than half of the {have / 2**30:.1f} GiB this machine has available: use fewer layers"
        )


def run_flow(mod: Module, depth, width, widths, C_b, C_W, input_norm2, C_b_n, C_W_n, tolerance, check, params):
    check_depth(depth)
    check_memory(int(depth), mod)
    widths = hidden_widths(depth, width, widths)
    check_positive("C_W", float(C_W))
    check_positive("C_b", float(C_b), strict=False)
    check_positive("input_norm2", float(input_norm2))
    pvals = mod.param_values(params)
    cb = hyper_parts(mod.order, C_b, C_b_n)
    cw = hyper_parts(mod.order, C_W, C_W_n)
    coeffs = np.zeros((depth, mod.top + 1, mod.order + 1))
    errors = np.zeros(depth)
    wvals = np.array(widths, dtype=np.float64)
    mod.flow_coefficients(wvals, cb, cw, float(input_norm2), pvals, bool(check), coeffs, errors)
    result = Flow(mod, coeffs, wvals, errors, float(C_b), float(C_W), float(input_norm2), dict(params))
    bad = np.flatnonzero(~(errors <= tolerance))
    if bad.size:
        raise _unresolved(mod.name, mod.top, coeffs, errors, int(bad[0]) + 1, tolerance)
    return result


def _unresolved(name: str, top: int, coeffs: np.ndarray, errors: np.ndarray, l: int, tolerance: float) -> FlowError:
    """Why layer ``l`` could not be reached, in words."""
    K = coeffs[l - 2, 1, 0] if l >= 2 else float("nan")
    if np.isnan(errors[l - 1]):
        return FlowError(
            f"the kernel of {name} vanished (K = {K:.3g}) at layer {l - 1}: the flow reached the "
            f"trivial fixed point K* = 0 (try fewer layers, C_b > 0 or a larger C_W)"
        )
    K1 = coeffs[0, 1, 0]
    if l >= 3 and K < 1e-3 * K1 and K < coeffs[l - 3, 1, 0]:  # unresolved because K fell toward 0
        return FlowError(
            f"the kernel of {name} collapses toward the trivial fixed point K* = 0: K = {K:.3g} at layer "
            f"{l - 1} (K = {K1:.3g} at layer 1), too small for its Gaussian expectations to be resolved in "
            f"double precision; use fewer layers, or C_b and C_W nearer a critical point (pdlt criticality)"
        )
    if not np.isfinite(errors[l - 1]) and K > 1e9:
        return FlowError(
            f"the kernel of {name} is too large to integrate at layer {l - 1} (K = {K:.3g}): the quadrature would need "
            f"more than {2 * numerics.TRAPEZOID_MAX:,} nodes; use a smaller C_W or smaller inputs"
        )
    if not np.isfinite(errors[l - 1]):
        return FlowError(
            f"a Gaussian expectation of {name} diverges or is not resolved at K = {K:.6g} "
            f"(layer {l - 1}): sigma(z)^{2 * top} is not integrable against N(0, K) there"
        )
    falling = ""
    if l >= 3 and K < 0.5 * K1:  # a kernel that falls fast makes closed forms cancel and rules lose digits
        falling = (
            f"; the kernel is falling (K = {K1:.3g} at layer 1) and may be collapsing toward the trivial "
            f"fixed point K* = 0: try C_b > 0 or C_W nearer a critical point (pdlt criticality), "
            f"or accept a larger tolerance"
        )
    return FlowError(
        f"Gaussian expectations of {name} at K = {K:.6g} (layer {l - 1}) have relative "
        f"error ~{errors[l - 1]:.1e}, above tolerance {tolerance:g}{falling}"
    )


def run_two_inputs(mod: Module, depth, C_b, C_W, input_norm2, input_dot, input_delta2, params) -> dict:
    if not mod.has_perp:
        raise FlowError(f"{mod.name} jumps, so sigma' and chi_perp are not defined")
    check_depth(depth)
    check_positive("C_W", float(C_W))
    check_positive("C_b", float(C_b), strict=False)
    check_positive("input_norm2", float(input_norm2))
    check_positive("input_delta2", float(input_delta2), strict=False)
    pvals = mod.param_values(params)
    out = np.zeros((depth, len(TWO_INPUT_FIELDS)))
    K00 = float(C_b) + float(C_W) * float(input_norm2)
    dK1, ddK2 = float(C_W) * float(input_dot), float(C_W) * float(input_delta2) / 4.0
    mod.two_input_coefficients(float(C_b), float(C_W), K00, dK1, ddK2, pvals, out)
    return {name: out[:, j].copy() for j, name in enumerate(TWO_INPUT_FIELDS)}


class Flow:
    """The flow through depth layers: coefficients, cumulant values, error estimates."""

    def __init__(self, module, coefficients, widths, errors, C_b, C_W, input_norm2, params):
        self.module = module  # the Module it came from: name, order, state, params
        self.coefficients = coefficients  # [layer-1, m, k] = c[m][k] of that layer
        self.widths = widths  # float64: a width beyond 2^63 (the infinite-width limit) is a fine input
        self.errors = errors
        self.C_b, self.C_W, self.input_norm2, self.params = C_b, C_W, input_norm2, params

    @property
    def order(self) -> int:
        return self.module.order

    @property
    def depth(self) -> int:
        return self.coefficients.shape[0]

    def __repr__(self):
        widths = ", ".join(str(int(n)) for n in self.widths[:6]) + (", ..." if len(self.widths) > 6 else "")
        return (
            f"Flow({self.module.name}, order={self.order}, depth={self.depth}, widths=[{widths}], C_b={self.C_b:g}, "
            f"C_W={self.C_W:g}, K(L)={self.coefficients[-1, 1, 0]:.6g})"
        )

    def _repr_html_(self):
        """A table of the last layers for notebooks."""
        names = [name for _, _, name in self.module.state]
        head = "".join(f"<th>{n}</th>" for n in ["layer", *names])
        rows = []
        for l in range(max(1, self.depth - 9), self.depth + 1):
            cells = "".join(f"<td>{self.coefficients[l - 1, m, k]:.6g}</td>" for m, k, _ in self.module.state)
            rows.append(f"<tr><td>{l}</td>{cells}</tr>")
        return f"<p>{self!r}</p><table><tr>{head}</tr>{''.join(rows)}</table>"

    def coefficient(self, m: int, k: int) -> np.ndarray:
        """c[m][k] for every layer, e.g. coefficient(2, 1) is the four-point vertex V."""
        return self.coefficients[:, m, k].copy()

    @property
    def K(self) -> np.ndarray:
        return self.coefficient(1, 0)

    @property
    def V(self) -> np.ndarray:
        return self.coefficient(2, 1) if self.order >= 1 else np.zeros(self.depth)

    @property
    def G1(self) -> np.ndarray:
        return self.coefficient(1, 1) if self.order >= 1 else np.zeros(self.depth)

    def values(self) -> np.ndarray:
        """values[l-1, m] = kappa_m(G(l)) = sum_k c[m][k] / n_{l-1}^k at the actual widths."""
        top = self.module.top
        out = np.zeros((self.depth, top + 1))
        out[0, 1] = self.coefficients[0, 1, 0]
        for l in range(2, self.depth + 1):
            n = float(self.widths[l - 2])
            for m in range(1, top + 1):
                out[l - 1, m] = sum(self.coefficients[l - 1, m, k] / n**k for k in range(m - 1, self.order + 1))
        return out

    def as_dict(self) -> dict:
        """The JSON schema of DESIGN section 4."""
        top, vals = self.module.top, self.values()
        layers = []
        for l in range(1, self.depth + 1):
            cumulants = {
                str(m): [float(self.coefficients[l - 1, m, k]) for k in range(m - 1, self.order + 1)]
                for m in range(1, top + 1)
            }
            layers.append(
                {
                    "layer": l,
                    "cumulants": cumulants,
                    "values": {str(m): float(vals[l - 1, m]) for m in range(1, top + 1)},
                    "error_estimate": float(self.errors[l - 1]),
                }
            )
        return {
            "activation": self.module.name,
            "order": self.order,
            "C_b": self.C_b,
            "C_W": self.C_W,
            "input_norm2": self.input_norm2,
            "widths": [int(n) for n in self.widths],
            "params": {p: float(self.params.get(p, d)) for p, d in self.module.params},
            "layers": layers,
        }
