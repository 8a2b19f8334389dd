"""The arguments of every ``pdlt`` command, kept apart from what the commands do, so that building the parser
(``pdlt --help``, a usage error) imports nothing heavy: no sympy, no numba (issue 9)."""

from __future__ import annotations

import argparse

from pdlt.runtime import MANY_MAX
from pdlt.runtime.predict import ALGORITHMS

SHIPPED_ORDER = 2  # the order in 1/n of the committed kernels (pdlt.generated)
RATES = ("equivalence", "uniform")  # the learning-rate rules of pdlt tradeoff


def add_flow_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("activation", help="registered name or formula in z")
    p.add_argument("--order", type=int, default=SHIPPED_ORDER, help=f"order in 1/n (default {SHIPPED_ORDER})")
    p.add_argument("--depth", type=int, required=True, help="number of layers L")
    p.add_argument("--width", help="width of every hidden layer")
    p.add_argument("--widths", help="comma-separated n_1,...,n_{L-1}")
    p.add_argument("--C-b", dest="C_b", type=float, help="bias variance (default 0)")
    p.add_argument("--C-W", dest="C_W", type=float, help="weight variance C_W (default 1)")
    p.add_argument(
        "--critical",
        action="store_true",
        help="initialize at the activation's critical point (as pdlt criticality finds it; stated on stderr)",
    )
    p.add_argument(
        "--input-norm2",
        dest="input_norm2",
        type=float,
        default=1.0,
        help="|x|^2/n_0 of the input, so K(1) = C_b + C_W |x|^2/n_0 (default 1)",
    )
    p.add_argument("--param", action="append", default=[], help="activation parameter NAME=VALUE")
    p.add_argument("--C-b-n", dest="C_b_n", help="1/n pieces of C_b: c_b{1},c_b{2},... (book 5.138)")
    p.add_argument("--C-W-n", dest="C_W_n", help="1/n pieces of C_W: c_W{1},c_W{2},... (book 5.139)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-10,
        help="largest relative quadrature error estimate accepted (default 1e-10)",
    )


def add_kernel_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("activation", help="registered name or formula in z")
    p.add_argument("--inputs", required=True, help="the inputs: a .npy file holding an (N, n_0) array")
    p.add_argument("--depth", type=int, required=True, help="number of layers L")
    p.add_argument("--C-b", dest="C_b", help="bias variance: one number or one per layer 1..L (default 0)")
    p.add_argument("--C-W", dest="C_W", help="weight variance: one number or one per layer 1..L (default 1)")
    p.add_argument("--lambda-b", dest="lambda_b", help="bias learning rate of the NTK, one or per layer (default C_b)")
    p.add_argument(
        "--lambda-W", dest="lambda_W", help="weight learning rate of the NTK, one or per layer (default C_W)"
    )
    p.add_argument("--critical", action="store_true", help="C_b, C_W at the activation's critical point")
    p.add_argument(
        "--rates",
        choices=("equivalence",),
        help="the book's learning rates at criticality (9.94-9.96): lambda~/L for scale-invariant activations, "
        "lambda~_b (1/l)^p_perp L^(p_perp-1) and lambda~_W (L/l)^(p_perp-1) for the K* = 0 class; --lambda-b and "
        "--lambda-W then give the single numbers lambda~ (default 1)",
    )
    p.add_argument(
        "--parametrization",
        choices=("ntk", "standard"),
        default="ntk",
        help="ntk (the book's, default) or standard (plain gradient descent: lambda_b = 1, lambda_W = n_(l-1))",
    )
    p.add_argument(
        "--widths",
        help="hidden widths n_1,...,n_(L-1): the standard parametrization's NTK needs them; G uses their ratios",
    )
    p.add_argument("--param", action="append", default=[], help="activation parameter NAME=VALUE")
    p.add_argument(
        "--tensors",
        default="K,Theta",
        help=f"comma-separated subset of K,Theta,G,H1,V,A,...,U (default K,Theta); H1,V,...,U: up to {MANY_MAX} inputs",
    )
    p.add_argument("--order", type=int, help="order in 1/n of G, 1 or 2 (default 1): G[k] multiplies 1/n_(l-1)^k")
    p.add_argument("--layers", help="comma-separated layers to store (default all 1..L)")
    p.add_argument(
        "--tolerance", type=float, default=1e-10, help="largest relative error bound accepted (default 1e-10)"
    )
    p.add_argument(
        "--out", required=True, help="output .npz file or .zarr store: layers, and one (layers, N, N) array per tensor"
    )
    p.add_argument("--scheduler", help="compute blocks on a dask.distributed scheduler (ADDRESS, or 'local')")
    p.add_argument("--chunk-size", dest="chunk_size", type=int, help="block size B (pairs B x B; default 2048)")
    p.add_argument("--json", action="store_true", help="print the run's summary as JSON")


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("activation", help="registered name or formula in z")
    p.add_argument("--train-inputs", dest="train_inputs", required=True, help=".npy file: (N, n_0) training inputs")
    p.add_argument("--train-targets", dest="train_targets", required=True,
                   help=".npy file: (N,) targets for one output, or (N, n_L)")  # fmt: skip
    p.add_argument("--test-inputs", dest="test_inputs", required=True, help=".npy file: (M, n_0) test inputs")
    p.add_argument("--depth", type=int, required=True, help="number of layers L")
    p.add_argument("--C-b", dest="C_b", help="bias variance: one number or one per layer 1..L (default 0)")
    p.add_argument("--C-W", dest="C_W", help="weight variance: one number or one per layer 1..L (default 1)")
    p.add_argument("--lambda-b", dest="lambda_b", help="bias learning rate, one or per layer (default C_b)")
    p.add_argument("--lambda-W", dest="lambda_W", help="weight learning rate, one or per layer (default C_W)")
    p.add_argument("--critical", action="store_true", help="C_b, C_W at the activation's critical point")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="gradient-flow",
                   help="gradient-flow (default), gd (descent at --eta), newton2 (two Newton steps)")  # fmt: skip
    p.add_argument("--eta", type=float, help="global learning rate of gd (per parameter: eta lambda)")
    p.add_argument("--width", type=float, help="hidden width n: also print the mean at n")
    p.add_argument("--param", action="append", default=[], help="activation parameter NAME=VALUE")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest relative error bound accepted (1e-4)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def add_tradeoff_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("activation", help="registered name or formula in z")
    p.add_argument("--width", type=int, required=True, help="hidden width n")
    p.add_argument("--depths", help="comma-separated depths L (default: 12 depths from 2 to n, r = L/n up to 1)")
    p.add_argument("--outputs", type=int, default=1, help="output width n_L, for r* = 4/((20 + 3 n_L) nu) (A.73)")
    p.add_argument("--rates", choices=RATES, default="equivalence",
                   help="learning rates: the equivalence principle (9.94)-(9.96, default) or uniform")  # fmt: skip
    p.add_argument("--lambda-b", dest="lambda_b", type=float, default=1.0, help="lambda~_b (default 1)")
    p.add_argument("--lambda-W", dest="lambda_W", type=float, default=1.0, help="lambda~_W (default 1)")
    p.add_argument("--samples", type=int, default=2000, help="sampled networks per Monte Carlo point (0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled networks")
    p.add_argument("--param", action="append", default=[], help="activation parameter NAME=VALUE")
    p.add_argument("--out", help="write the figure to this PNG")
    p.add_argument("--json", action="store_true", help="machine-readable output")
