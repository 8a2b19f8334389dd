"""pdlt kernel matrices side by side with neural-tangents 0.6.5, in one run (docs/benchmarks.md, section (e)).

neural-tangents does not import with current JAX, so it lives in its own virtual environment:

    python3.11 -m venv /tmp/nt
    /tmp/nt/bin/pip install neural-tangents==0.6.5 jax==0.4.30 jaxlib==0.4.30 tf2jax==0.3.6 "numpy<2"
    python benchmarks/neural_tangents.py --nt-python /tmp/nt/bin/python [--sizes 300,1000,3000]

Every case runs in a fresh process (peak resident memory is the process's): N standard-normal inputs,
n_0 = 64, seed 0, depth 10, NNGP and NTK of the last layer, float64 (jax_enable_x64), neural-tangents'
``Dense(W_std=sqrt(C_W), b_std=sqrt(C_b), parameterization='ntk')`` (the same NTK as pdlt's defaults
lambda_b = C_b, lambda_W = C_W), its closed forms for relu, erf and gelu and
``ElementwiseNumerical(tanh, deg=25)`` (its default) for tanh. The timed call follows a warm-up on 8 inputs
(compilation). Accuracy: 10 inputs with a near-duplicate (1e-7) and a near-antiparallel (1e-6) pair against
the references of pdlt.codegen.kernel_reference, the largest error of any entry relative to sqrt(K_aa K_bb).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from pdlt.codegen.bench_kernels import DEPTH, HYPER, hard_inputs, reference, scaled_error

NT_WORKER = r"""
import json, resource, sys, time
import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from neural_tangents import stax
name, (cb, cw), depth, (inp, out) = sys.argv[1], map(float, sys.argv[2:4]), int(sys.argv[4]), sys.argv[5:7]
act = {"relu": stax.Relu(), "erf": stax.Erf(), "gelu": stax.Gelu(),
       "tanh": stax.ElementwiseNumerical(jnp.tanh, deg=25)}[name]
layers = []
for _ in range(depth - 1):
    layers += [stax.Dense(1, W_std=cw ** 0.5, b_std=cb ** 0.5, parameterization="ntk"), act]
layers.append(stax.Dense(1, W_std=cw ** 0.5, b_std=cb ** 0.5, parameterization="ntk"))
kernel_fn = jax.jit(stax.serial(*layers)[2], static_argnames="get")
x = np.load(inp)
kernel_fn(x[:8], x[:8], get=("nngp", "ntk")).nngp.block_until_ready()
t0 = time.perf_counter()
k = kernel_fn(x, x, get=("nngp", "ntk"))
k.nngp.block_until_ready(); k.ntk.block_until_ready()
seconds = time.perf_counter() - t0
np.savez(out, K=np.asarray(k.nngp), Theta=np.asarray(k.ntk))
print(json.dumps({"seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

PDLT_WORKER = r"""
import json, resource, sys, time
import numpy as np
from pdlt import generated
name, (cb, cw), depth, (inp, out) = sys.argv[1], map(float, sys.argv[2:4]), int(sys.argv[4]), sys.argv[5:7]
mod = generated.load(name)
x = np.load(inp)
mod.kernel(x[:8], depth, C_b=cb, C_W=cw)
t0 = time.perf_counter()
r = mod.kernel(x, depth, C_b=cb, C_W=cw, layers=[depth])
seconds = time.perf_counter() - t0
np.savez(out, K=r.K[0], Theta=r.Theta[0])
print(json.dumps({"seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_case(python: str, worker: str, name: str, x: np.ndarray, folder: Path, timeout: float) -> dict:
    inp, out = folder / "x.npy", folder / "k.npz"
    np.save(inp, x)
    cb, cw = HYPER[name]
    argv = [python, "-c", worker, name, str(cb), str(cw), str(DEPTH), str(inp), str(out)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"failed": f"over {timeout:.0f} s"}
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["?"]
        errors = [line for line in lines if "Error" in line or "RESOURCE_EXHAUSTED" in line or "Killed" in line]
        reason = (errors or lines)[-1]
        if proc.returncode < 0:
            reason = f"killed by signal {-proc.returncode} (out of memory?)"
        return {"failed": reason[:160]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    with np.load(out) as data:
        result["K"], result["Theta"] = data["K"], data["Theta"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nt-python", required=True, help="the python of a venv with neural-tangents 0.6.5")
    parser.add_argument("--sizes", default="300,1000,3000")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--activations", default=",".join(HYPER), help=f"a subset of {','.join(HYPER)}")
    args = parser.parse_args()
    sizes = [int(v) for v in args.sizes.split(",")]
    names = [v for v in args.activations.split(",") if v in HYPER]
    rows, accuracy = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        hard = hard_inputs()
        for name in names:
            K, T = reference(name, hard)
            accuracy[name] = {}
            for code, python, worker in (("pdlt", sys.executable, PDLT_WORKER),
                                         ("neural-tangents", args.nt_python, NT_WORKER)):  # fmt: skip
                r = run_case(python, worker, name, hard, folder, args.timeout)
                accuracy[name][code] = r.get("failed") or max(scaled_error(r["K"], K), scaled_error(r["Theta"], T))
        for n in sizes:
            x = np.random.default_rng(0).normal(size=(n, 64))
            for name in names:
                for code, python, worker in (("pdlt", sys.executable, PDLT_WORKER),
                                             ("neural-tangents", args.nt_python, NT_WORKER)):  # fmt: skip
                    r = run_case(python, worker, name, x, folder, args.timeout)
                    kept = {k: r[k] for k in ("seconds", "peak_mib", "failed") if k in r}
                    row = {"N": n, "activation": name, "code": code, **kept}
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"N x N NNGP + NTK, depth {DEPTH}, float64, one fresh process per case")
    print(f"{'N':>6} {'activation':<10} {'code':<16} {'seconds':>9} {'peak MiB':>9}")
    for r in rows:
        if "failed" in r:
            print(f"{r['N']:>6} {r['activation']:<10} {r['code']:<16} failed: {r['failed']}")
        else:
            print(f"{r['N']:>6} {r['activation']:<10} {r['code']:<16} {r['seconds']:>9.3f} {r['peak_mib']:>9.0f}")
    print("accuracy on 10 inputs with near-duplicate and near-antiparallel pairs (max scaled error, layer 10):")
    for name, acc in accuracy.items():
        cells = ", ".join(f"{code} {v:.1e}" if isinstance(v, float) else f"{code} {v}" for code, v in acc.items())
        print(f"  {name:<6} {cells}")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "accuracy": accuracy}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
