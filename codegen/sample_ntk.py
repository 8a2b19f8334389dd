"""Sampled networks' NTK and dNTK for one input, from their definitions (book 8.5, 8.7, 11.8), never through the
forward equations the theory starts from. Used by ``pdlt tradeoff`` for its Monte Carlo points and by
tests/montecarlo/test_ntk_mc.py.

Each network is drawn as initialised: Gaussian weights with variance C_W/n and biases C_b at width n in every
hidden layer, its layer-1 preactivations from their exact law N(0, K(1)). With J_l = dz(L)/dz(l) of the first
``rows`` output neurons (J_L = 1, J_l = J_(l+1) W(l+1) diag sigma'(z(l))), the NTK is

    H(L) = sum_l [lambda_b(l) + lambda_W(l) |sigma(z(l-1))|^2 / n_(l-1)] J_l J_l^T        (sigma(z(0)) = x),

and the dNTK dH_{i0 i1 i2} = sum lambda lambda d^2 z_i0/dtheta dtheta dz_i1/dtheta dz_i2/dtheta of output neurons
0 and 1 is the second derivative of z(L) along the directions v_i = lambda grad z_i, by forward mode (a step
along v_i moves the biases of layer l by lambda_b J_l[i] and the weights by lambda_W / n J_l[i] sigma(z(l-1))^T).
sigma'' is the function's derivative where it exists (0 for ReLU, as autodiff has it).
"""

from __future__ import annotations

import numpy as np


def sample(fns, n: int, count: int, C_b: float, C_W: float, lambda_b, lambda_W, norm2: float, rng, rows: int = 8):
    """Per network (arrays over ``count`` networks): ``z`` (count, rows) at the output, its NTK ``H``
    (count, rows, rows), ``G`` = E[z_i^2 | the layers below], and the dNTK along output neurons 0, 1:
    ``dH001`` = dH_{0 0 1}, ``dH011`` = dH_{0 1 1}, ``dH100`` = dH_{1 0 0}, ``dH110`` = dH_{1 1 0}.
    ``fns`` = (sigma, sigma', sigma'') on numpy arrays, or with sigma''' too: then also the first ddNTK
    ``ddH0011`` = dd_I H_{0 0 1 1} and ``ddH1100`` = dd_I H_{1 1 0 0} (book ∞.5: third derivatives along v_0, v_1)
    and ``dd2S``, ``dd2T``, ``dd2U`` (``ddntk_ii``);
    lambda_b, lambda_W one value per layer 1..depth."""
    s, ds, dds = fns[:3]
    lb, lw = np.asarray(lambda_b, dtype=float), np.asarray(lambda_W, dtype=float)
    depth = lb.size
    zs = [np.sqrt(C_b + C_W * norm2) * rng.standard_normal((count, n))]
    Ws = []
    for _ in range(1, depth):
        W = rng.standard_normal((count, n, n)) * np.sqrt(C_W / n)
        zs.append(np.sqrt(C_b) * rng.standard_normal((count, n)) + np.einsum("bij,bj->bi", W, s(zs[-1])))
        Ws.append(W)
    m = min(rows, n)
    J = np.broadcast_to(np.eye(n)[:m], (count, m, n)).copy()
    H = np.zeros((count, m, m))
    Js, cs = [None] * depth, [None] * depth
    for l in range(depth, 0, -1):  # layer l (1-based): J = dz(L)/dz(l)
        c = lb[l - 1] + lw[l - 1] * (norm2 if l == 1 else np.mean(s(zs[l - 2]) ** 2, axis=1))
        cs[l - 1], Js[l - 1] = np.broadcast_to(c, (count,)), J[:, :2]
        H += np.reshape(c, (-1, 1, 1)) * np.matmul(J, J.transpose(0, 2, 1))
        if l > 1:
            J = np.matmul(J, Ws[l - 2]) * ds(zs[l - 2])[:, None, :]
    d_st, d_tt, d_ss, d_stt, d_sst = _dntk(zs, Ws, Js, cs, lw, n, s, ds, dds, fns[3] if len(fns) > 3 else None)
    second = ddntk_ii(zs, Ws, Js, cs, lb, lw, n, fns) if len(fns) > 3 else {}
    G = C_b + C_W * np.mean(s(zs[-2]) ** 2, axis=1) if depth > 1 else np.full(count, C_b + C_W * norm2)
    return {"z": zs[-1][:, :m], "H": H, "G": G, "dH001": d_st[:, 0], "dH011": d_tt[:, 0], "dH110": d_st[:, 1],
            "dH100": d_ss[:, 1], "ddH0011": d_stt[:, 0], "ddH1100": d_sst[:, 1],
            **{f"dd2{k}": v for k, v in second.items()}}  # fmt: skip


def _dntk(zs, Ws, Js, cs, lw, n, s, ds, dds, ddds=None):
    """Derivatives of z(L) along v_0 (s) and v_1 (t), layer by layer: (z_st, z_tt, z_ss) at layer L, and with
    sigma''' (``ddds``) also the third ones (z_stt, z_sst). A weight step along v_i is A_i x = lambda_W / n J_i
    (sigma . x) on the next layer's input x; it is linear in s and t, so the k-th derivative of W u is
    W u^(k) plus the A_i times the lower derivatives of u (Leibniz)."""
    count = zs[0].shape[0]
    d_s, d_t = cs[0][:, None] * Js[0][:, 0], cs[0][:, None] * Js[0][:, 1]
    d_st, d_tt, d_ss, d_stt, d_sst = (np.zeros((count, n)) for _ in range(5))
    for l in range(1, len(zs)):
        z = zs[l - 1]
        u, up, upp = s(z), ds(z), dds(z)
        u_s, u_t = up * d_s, up * d_t
        u_st, u_tt, u_ss = upp * d_s * d_t + up * d_st, upp * d_t**2 + up * d_tt, upp * d_s**2 + up * d_ss
        j0, j1 = Js[l][:, 0], Js[l][:, 1]
        W = Ws[l - 1]

        def Wv(v, W=W):
            return np.einsum("bij,bj->bi", W, v)

        def A(j, x, u=u, js=(j0, j1), scale=lw[l] / n):  # the weight step along v_j applied to x
            return scale * js[j] * np.sum(u * x, axis=1, keepdims=True)

        new = [
            cs[l][:, None] * j0 + Wv(u_s),
            cs[l][:, None] * j1 + Wv(u_t),
            A(0, u_t) + A(1, u_s) + Wv(u_st),
            2 * A(1, u_t) + Wv(u_tt),
            2 * A(0, u_s) + Wv(u_ss),
        ]
        if ddds is not None:
            uppp = ddds(z)
            u_stt = uppp * d_s * d_t**2 + upp * (2 * d_t * d_st + d_s * d_tt) + up * d_stt
            u_sst = uppp * d_s**2 * d_t + upp * (2 * d_s * d_st + d_t * d_ss) + up * d_sst
            new += [A(0, u_tt) + 2 * A(1, u_st) + Wv(u_stt), A(1, u_ss) + 2 * A(0, u_st) + Wv(u_sst)]
        else:
            new += [d_stt, d_sst]
        d_s, d_t, d_st, d_tt, d_ss, d_stt, d_sst = new
    return d_st, d_tt, d_ss, d_stt, d_sst


def pair_statistics(x: dict) -> dict[str, np.ndarray]:
    """Per network, the averages over pairs i != j of the m output neurons that the tensors' estimators need:
    E[.] of ``hh`` = H_ii H_jj, ``hij2`` = H_ij^2, ``zhz`` = z_i z_j H_ij, ``h`` = H_ii, ``G``, ``GG`` = G^2,
    ``Gh`` = G H_ii, and ``p`` = dH_{i j j} z_i, ``q`` = dH_{i i j} z_j (book 11.30) over the two neurons with a
    dNTK."""
    z, H, G = x["z"], x["H"], x["G"]
    d = np.einsum("bii->bi", H)
    m = d.shape[1]
    pairs = m * (m - 1)
    return {
        "h": d.mean(axis=1),
        "hh": (d.sum(1) ** 2 - (d * d).sum(1)) / pairs,
        "hij2": ((H * H).sum((1, 2)) - (d * d).sum(1)) / pairs,
        "zhz": (np.einsum("bi,bij,bj->b", z, H, z) - (z * z * d).sum(1)) / pairs,
        "G": G,
        "GG": G * G,
        "Gh": G * d.mean(axis=1),
        "p": 0.5 * (x["dH011"] * z[:, 0] + x["dH100"] * z[:, 1]),
        "q": 0.5 * (x["dH001"] * z[:, 1] + x["dH110"] * z[:, 0]),
        "r": 0.5 * (x["ddH0011"] + x["ddH1100"]),  # E[dd_I H_{i i j j}] = R/n (book ∞.11), i != j
        **{k.lower(): x["dd2" + k] for k in "STU" if "dd2" + k in x},  # E[dd_II H] = S/n, T/n, U/n (∞.12)
    }


def estimators(n: int) -> dict:
    """n times each tensor's defining expectation (book 8.82, 8.67, 4.77, 11.30), from pair statistics: functions
    of a dict of per-network arrays (so a jackknife can drop groups). D and V use E[z_i^2 | below] = G."""

    def mean(a, k):
        return a[k].mean()

    return {
        "H": lambda a: mean(a, "h"),
        "V": lambda a: n * (mean(a, "GG") - mean(a, "G") ** 2),
        "A": lambda a: n * (mean(a, "hh") - mean(a, "h") ** 2),
        "B": lambda a: n * mean(a, "hij2"),
        "D": lambda a: n * (mean(a, "Gh") - mean(a, "G") * mean(a, "h")),
        "F": lambda a: n * mean(a, "zhz"),
        "P": lambda a: n * mean(a, "p"),
        "Q": lambda a: n * mean(a, "q"),
        "R": lambda a: n * mean(a, "r"),
        **{k: (lambda a, k=k: n * mean(a, k.lower())) for k in "STU"},
    }


def jackknife(data: dict[str, np.ndarray], f, groups: int = 50) -> tuple[float, float]:
    """(f(data), its grouped-jackknife standard error), for an ``f`` of the arrays' means only (as every estimator
    here is): each group's leave-one-out means come from the group sums, so no array is copied."""
    keys = list(data)
    size = len(data[keys[0]])
    parts = np.array_split(np.arange(size), groups)
    counts = np.array([len(g) for g in parts], dtype=float)
    sums = {k: np.array([data[k][g].sum() for g in parts]) for k in keys}
    total = {k: v.sum() for k, v in sums.items()}
    full = f({k: np.asarray(total[k] / size) for k in keys})
    values = [f({k: np.asarray((total[k] - sums[k][i]) / (size - counts[i])) for k in keys}) for i in range(groups)]
    spread = np.sum((np.array(values) - np.mean(values)) ** 2)
    return float(full), float(np.sqrt((groups - 1) / groups * spread))


def sample_two(fns, n: int, count: int, C_b: float, C_W: float, lambda_b, lambda_W, gram: np.ndarray, rng,
               rows: int = 8):  # fmt: skip
    """Two inputs through the same networks (gram[a, b] = x_a . x_b / n_0): ``z`` (count, rows, 2) at the output,
    the NTK ``H`` (count, rows, rows, 2, 2) with H[., i, j, a, b] = H_{ij;ab} by the chain rule as in ``sample``,
    and ``G`` (count, 2, 2) = E[z_{i;a} z_{i;b} | the layers below]."""
    s, ds, _ = fns
    lb, lw = np.asarray(lambda_b, dtype=float), np.asarray(lambda_W, dtype=float)
    depth = lb.size
    K1 = C_b + C_W * gram
    chol = np.linalg.cholesky(K1)
    zs = [np.einsum("ab,cnb->cna", chol, rng.standard_normal((count, n, 2)))]  # (count, n, 2)
    Ws = []
    for _ in range(1, depth):
        W = rng.standard_normal((count, n, n)) * np.sqrt(C_W / n)
        b = np.sqrt(C_b) * rng.standard_normal((count, n, 1))
        zs.append(b + np.einsum("cij,cja->cia", W, s(zs[-1])))
        Ws.append(W)
    m = min(rows, n)
    J = np.broadcast_to(np.eye(n)[:m, :, None], (count, m, n, 2)).copy()  # J[., i, j, a] = dz_{i;a}(L)/dz_{j;a}(l)
    H = np.zeros((count, m, m, 2, 2))
    for l in range(depth, 0, -1):
        if l == 1:
            c = np.broadcast_to(lb[0] + lw[0] * gram, (count, 2, 2))
        else:
            u = s(zs[l - 2])
            c = lb[l - 1] + lw[l - 1] * np.einsum("cja,cjb->cab", u, u) / n
        H += np.einsum("cab,ciza,cjzb->cijab", c, J, J)
        if l > 1:
            J = np.einsum("cija,cjk->cika", J, Ws[l - 2]) * ds(zs[l - 2])[:, None, :, :]
    u = s(zs[-2]) if depth > 1 else None
    G = C_b + C_W * np.einsum("cja,cjb->cab", u, u) / n if depth > 1 else np.broadcast_to(K1, (count, 2, 2))
    return {"z": zs[-1][:, :m], "H": H, "G": G}


def two_input_estimates(x: dict, n: int) -> dict[str, np.ndarray]:
    """Per network, for every entry (a1, a2, a3, a4) in {0, 1}^4, the pair averages (i != j) whose means give n^-1
    times V, A, B, D, F (book 4.77, 8.82, 8.67; slots as pdlt stores them): keys "<name>:<a1a2a3a4>" and the
    means they are centred with ("h:<ab>" = H_ii;ab, "G:<ab>")."""
    z, H, G = x["z"], x["H"], x["G"]
    m = z.shape[1]
    off = ~np.eye(m, dtype=bool)
    pairs = m * (m - 1)
    d = np.einsum("ciiab->ciab", H)  # diagonal H_{ii;ab}
    out: dict[str, np.ndarray] = {}
    for a, b in np.ndindex(2, 2):
        out[f"h:{a}{b}"] = d[:, :, a, b].mean(axis=1)
        out[f"G:{a}{b}"] = G[:, a, b]
    for a1, a2, a3, a4 in np.ndindex(2, 2, 2, 2):
        key = f"{a1}{a2}{a3}{a4}"
        hh = np.einsum("ci,cj->cij", d[:, :, a1, a2], d[:, :, a3, a4])
        out["A:" + key] = hh[:, off].sum(axis=1) / pairs
        out["B:" + key] = (H[:, :, :, a1, a3] * H[:, :, :, a2, a4])[:, off].sum(axis=1) / pairs
        zz = np.einsum("ci,cj->cij", z[:, :, a1], z[:, :, a3])
        out["F:" + key] = (zz * H[:, :, :, a2, a4])[:, off].sum(axis=1) / pairs
        out["GG:" + key] = G[:, a1, a2] * G[:, a3, a4]
        out["Gh:" + key] = G[:, a1, a2] * d[:, :, a3, a4].mean(axis=1)
    return out


def two_input_estimators(n: int) -> dict:
    """name:entry -> n times the defining expectation, from ``two_input_estimates`` (for a jackknife)."""

    def mean(a, k):
        return a[k].mean()

    out = {}
    for a1, a2, a3, a4 in np.ndindex(2, 2, 2, 2):
        key, ab, cd = f"{a1}{a2}{a3}{a4}", f"{a1}{a2}", f"{a3}{a4}"
        out["V:" + key] = lambda a, k=key, ab=ab, cd=cd: (
            n * (mean(a, "GG:" + k) - mean(a, "G:" + ab) * mean(a, "G:" + cd))
        )
        out["A:" + key] = lambda a, k=key, ab=ab, cd=cd: (
            n * (mean(a, "A:" + k) - mean(a, "h:" + ab) * mean(a, "h:" + cd))
        )
        out["B:" + key] = lambda a, k=key: n * mean(a, "B:" + k)
        out["D:" + key] = lambda a, k=key, ab=ab, cd=cd: (
            n * (mean(a, "Gh:" + k) - mean(a, "G:" + ab) * mean(a, "h:" + cd))
        )
        out["F:" + key] = lambda a, k=key: n * mean(a, "F:" + k)
    return out


def _tangents(zs, Ws, Js, cs, ds, j):
    """Per layer, the tangent of z along v_j: dz(1) = c_1 J_1[j], dz(l) = c_l J_l[j] + W(l) (sigma'(z(l-1)) dz(l-1))."""
    out = [cs[0][:, None] * Js[0][:, j]]
    for l in range(1, len(zs)):
        out.append(cs[l][:, None] * Js[l][:, j] + np.einsum("bij,bj->bi", Ws[l - 1], ds(zs[l - 1]) * out[-1]))
    return out


def _adjoints(zs, Ws, Js, tangent, lw, n, fns, i, j):
    """The gradient of g = D z_i(L)[v_j] (v_j held fixed) by reverse mode through the forward and tangent passes:
    per layer l, (a_z, a_t), the adjoints of z(l) and of its tangent, so that the gradient of g with respect to the
    weights of layer l is a_z sigma(z(l-1))^T + a_t (sigma'(z(l-1)) dz(l-1))^T, and to its biases a_z. A weight step
    along v_j is lambda_W / n J_l[j] sigma(z(l-1))^T, so the tangent's weight term adds (J_l[j] . a_t) lambda_W / n
    sigma(z(l-1)) to the adjoint of sigma(z(l-1))."""
    s, ds, dds = fns[:3]
    count = zs[0].shape[0]
    a_z, a_t = np.zeros((count, n)), np.zeros((count, n))
    a_t[:, i] = 1.0
    out = [None] * len(zs)
    for l in range(len(zs) - 1, 0, -1):
        out[l] = (a_z, a_t)
        W, z = Ws[l - 1], zs[l - 1]
        step = lw[l] / n * np.sum(Js[l][:, j] * a_t, axis=1, keepdims=True)
        a_u = np.einsum("bji,bj->bi", W, a_z) + step * s(z)
        a_du = np.einsum("bji,bj->bi", W, a_t)
        a_z, a_t = ds(z) * a_u + dds(z) * tangent[l - 1] * a_du, ds(z) * a_du
    out[0] = (a_z, a_t)
    return out


def _lambda_dot(zs, tangents, adj1, adj2, cs, lb, lw, n, fns, j1, j2):
    """sum_mu lambda_mu (grad g1)_mu (grad g2)_mu for two adjoint sets (directions j1, j2 of their tangents)."""
    s, ds = fns[0], fns[1]
    total = cs[0] * np.sum(adj1[0][0] * adj2[0][0], axis=1)  # layer 1: c_1 = lambda_b + lambda_W |x|^2 / n_0
    for l in range(1, len(zs)):
        (z1, t1), (z2, t2) = adj1[l], adj2[l]
        u = s(zs[l - 1])
        du1, du2 = ds(zs[l - 1]) * tangents[j1][l - 1], ds(zs[l - 1]) * tangents[j2][l - 1]

        def dot(x, y):
            return np.sum(x * y, axis=1)

        weights = dot(z1, z2) * dot(u, u) + dot(z1, t2) * dot(u, du2) + dot(t1, z2) * dot(du1, u)
        weights += dot(t1, t2) * dot(du1, du2)
        total = total + lb[l] * dot(z1, z2) + lw[l] / n * weights
    return total


def ddntk_ii(zs, Ws, Js, cs, lb, lw, n, fns) -> dict[str, np.ndarray]:
    """dd_II H (book ∞.7) = sum lambda (H z_i1 v_i3)(H z_i2 v_i4) for output neurons 0, 1, per network:
    ``S`` = dd_II H_{0011} and dd_II H_{1100}, ``T`` = dd_II H_{0101}, ``U`` = dd_II H_{0110} (means S/n, T/n,
    U/n by ∞.12), each the average of the two ways round."""
    tangents = [_tangents(zs, Ws, Js, cs, fns[1], j) for j in (0, 1)]
    adj = {(i, j): _adjoints(zs, Ws, Js, tangents[j], lw, n, fns, i, j) for i in (0, 1) for j in (0, 1)}

    def dd(a, b):
        return _lambda_dot(zs, tangents, adj[a], adj[b], cs, lb, lw, n, fns, a[1], b[1])

    return {
        "S": 0.5 * (dd((0, 1), (0, 1)) + dd((1, 0), (1, 0))),
        "T": 0.5 * (dd((0, 0), (1, 1)) + dd((1, 1), (0, 0))),
        "U": 0.5 * (dd((0, 1), (1, 0)) + dd((1, 0), (0, 1))),
    }
