"""Plain-text output of the ``pdlt`` commands (the JSON output is the data itself)."""

from __future__ import annotations

from pdlt.derive.notation import state_name


def format_table(flow, module, args) -> str:
    order = module.ORDER
    keys = [(m, k) for m in range(1, order + 2) for k in range(m - 1, order + 1)]
    vals = flow.values()
    head = [f"{'layer':>5}"] + [f"{state_name(m, k):>12}" for m, k in keys]
    head += [f"{'kappa_' + str(m):>12}" for m in range(1, order + 2)]
    lines = [
        f"pdlt flow: {args.activation} at order {order} in 1/n; C_b = {args.C_b:g}, C_W = {args.C_W:g}, "
        f"|x|^2/n_0 = {args.input_norm2:g}",
        "c[m][k] (columns by name) are the 1/n_{l-1}^k parts of kappa_m(G(l)), the m-th cumulant of the",
        "stochastic metric; kappa_m sums them at the actual widths (kappa_2 = Var G, E[z^4]-3E[z^2]^2 = 3 kappa_2).",
        "",
        " ".join(head),
    ]
    for l in range(1, flow.depth + 1):
        row = [f"{l:>5}"] + [f"{flow.coefficients[l - 1, m, k]:>12.5g}" for m, k in keys]
        row += [f"{vals[l - 1, m]:>12.5g}" for m in range(1, order + 2)]
        lines.append(" ".join(row))
    worst = float(max(flow.errors.max(), 0.0))
    lines.append("")
    lines.append(f"largest error estimate of the expectations (relative): {worst:.1e}")
    return "\n".join(lines)


def format_criticality(data: dict) -> str:
    lines = [f"{data['activation']}: class {data['class']}", f"  {data['reason']}"]
    for p in data["critical_points"]:
        kstar = "line of fixed points" if p["K_star"] is None else f"K* = {p['K_star']:.10g}"
        lines.append(
            f"  critical point: C_b = {p['C_b']:.10g}, C_W = {p['C_W']:.10g}, {kstar}, "
            f"chi_par = {p['chi_parallel']:.6g}, chi_perp = {p['chi_perp']:.6g}, "
            f"{'stable' if p['stable'] else 'not stable'} ({p.get('note', '')})"
        )
    for p in data.get("rejected", []):
        lines.append(f"  rejected: {p}")
    if data.get("taylor"):
        taylor = ", ".join(f"{k} = {v['exact']}" for k, v in data["taylor"].items() if v is not None)
        lines.append(f"  Taylor data: {taylor}")
    if data.get("exponents"):
        lines.append("  exponents: " + ", ".join(f"{k} = {v}" for k, v in data["exponents"].items()))
    if data.get("exponents_flow"):
        lines.append(
            "  exponents from the generated flow (local slopes, l = 2000..4000): "
            + ", ".join(f"{k} = {v}" for k, v in data["exponents_flow"].items())
        )
    if data.get("nu") is not None:
        exact = f" (exact {data['nu_exact']})" if data.get("nu_exact") else ""
        lines.append(
            f"  nu = {data['nu']:.6g}{exact}: V/(nK^2) ~ nu l/n; "
            f"from the generated flow: {data.get('nu_flow', float('nan')):.6g}"
        )
    if data.get("renormalized"):
        lines.append(
            f"  1/n-corrected initialization: --C-W-n {data['renormalized']['C_W_n'][0]:.6g} "
            f"({data['renormalized']['note']})"
        )
    return "\n".join(lines)


def format_aspect_ratio(result, args) -> str:
    """The text of ``pdlt aspect-ratio``."""
    return "\n".join(
        [
            f"{args.activation}: depth L = {args.depth}, width n = {args.width}, outputs n_L = {args.outputs}, "
            f"C_b = {result.C_b:.6g}, C_W = {result.C_W:.6g}",
            f"  aspect ratio r = L/n = {result.r:.4g}; nu = {result.nu:.4g}; "
            f"optimal r* = 4/((20 + 3 n_L) nu) = {result.r_star:.4g}",
            f"  at the output: V/(nK^2) = {result.vertex:.4g}, G{{1}}/(nK) = {result.nlo_metric:.4g}, "
            f"V{{1}}/(n^2K^2) = {result.next_vertex:.3g}; first neglected order ~ {result.neglected:.2g}",
            f"  {result.verdict}",
        ]
    )
