"""Kernel matrices block by block: on a Dask cluster, and into zarr stores larger than memory (DESIGN §9).

Once the diagonal (single-input) flows are known, every pair runs through all layers on its own, so the
N x N matrices are a grid of independent blocks. ``run_blocks`` computes the blocks on or above the
diagonal (rows i0..i1, columns j0..j1 with i0 <= j0), in this process or as tasks of a
``dask.distributed`` scheduler, and puts each block and its transpose into memory or into a zarr store.
Every pair is computed by the same numba code with the same inputs however the blocks are cut, so the
results are identical to the single-process run, bit for bit.

A zarr store is written under a temporary name beside the target and renamed into place when complete,
so a failed run leaves nothing behind. It holds ``layers`` and ``K`` (and ``Theta``) of shape
(stored layers, N, N), chunked (1, B, B) with B the block size.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import FlowError
from .kernels import KernelMatrices, Plan, _check_memory, compute_block

DEFAULT_CHUNK = 2048


def block_edges(n: int, chunk: int) -> list[tuple[int, int, int, int]]:
    """(r0, r1, c0, c1) of every block on or above the diagonal."""
    cuts = [*range(0, n, chunk), n]
    spans = list(zip(cuts[:-1], cuts[1:]))
    return [(r0, r1, c0, c1) for a, (r0, r1) in enumerate(spans) for (c0, c1) in spans[a:]]


class _Memory:
    def __init__(self, plan: Plan, n: int) -> None:
        self.K = np.zeros((plan.n_store, n, n))
        self.Theta = np.zeros_like(self.K) if plan.theta else None
        self.G = None

    def put(self, r0, r1, c0, c1, kb, tb) -> None:
        for full, block in ((self.K, kb), (self.Theta, tb)):
            if full is not None:
                full[:, r0:r1, c0:c1] = block
                full[:, c0:c1, r0:r1] = block.transpose(0, 2, 1)

    def start_g(self, shape) -> None:
        self.G = np.zeros(shape)

    def put_g(self, r0, r1, c0, c1, gb) -> None:
        self.G[:, :, r0:r1, c0:c1] = gb
        self.G[:, :, c0:c1, r0:r1] = gb.transpose(0, 1, 3, 2)

    def read_g(self):
        return self.G

    def finish(self):
        return self.K, self.Theta

    def abandon(self) -> None:
        pass


class _Zarr:
    """A zarr store written under a temporary name and renamed into place when complete."""

    def __init__(self, path: str, plan: Plan, layers: np.ndarray, n: int, chunk: int) -> None:
        try:
            import zarr
        except ImportError:
            raise FlowError("a .zarr output needs zarr: pip install zarr") from None
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.group = zarr.open_group(str(self.tmp), mode="w")
        self.group.create_array("layers", data=np.asarray(layers, dtype=np.int64))
        shape, chunks = (plan.n_store, n, n), (1, min(chunk, n), min(chunk, n))
        self.arrays = [self.group.create_array("K", shape=shape, chunks=chunks, dtype="float64")]
        if plan.theta:
            self.arrays.append(self.group.create_array("Theta", shape=shape, chunks=chunks, dtype="float64"))

    def put(self, r0, r1, c0, c1, kb, tb) -> None:
        for array, block in zip(self.arrays, (kb, tb)):
            array[:, r0:r1, c0:c1] = block
            if (r0, r1) != (c0, c1):
                array[:, c0:c1, r0:r1] = block.transpose(0, 2, 1)

    def start_g(self, shape) -> None:
        """G (stored, order + 1, N, N) in the same store, chunked like K; a retry overwrites it."""
        chunk = self.arrays[0].chunks
        self.g = self.group.create_array("G", shape=shape, chunks=(1, 1, *chunk[1:]), dtype="float64",
                                         overwrite=True)  # fmt: skip

    def put_g(self, r0, r1, c0, c1, gb) -> None:
        self.g[:, :, r0:r1, c0:c1] = gb
        if (r0, r1) != (c0, c1):
            self.g[:, :, c0:c1, r0:r1] = gb.transpose(0, 1, 3, 2)

    def read_g(self):
        return None  # read from the finished store

    def finish(self):
        import zarr

        old = self.path.with_name(f".{self.path.name}.old-{os.getpid()}")
        if self.path.exists():
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        shutil.rmtree(old, ignore_errors=True)
        group = zarr.open_group(str(self.path), mode="r")
        self.final = group
        return group["K"], (group["Theta"] if "Theta" in group else None)

    def abandon(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _client(scheduler: str):
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise FlowError("a Dask scheduler needs dask.distributed: pip install 'dask[distributed]'") from None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout="20s"), None
    except (OSError, TimeoutError) as exc:
        raise FlowError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None


def run_blocks(
    plan: Plan,
    result: KernelMatrices,
    out,
    scheduler: str | None,
    chunk_size: int | None,
    progress: Callable | None,
    truncation: Callable,
    finite: Callable | None = None,
) -> KernelMatrices:
    """Fill ``result.K`` (and ``Theta``) block by block, here or on ``scheduler``; write ``out`` if given.
    ``truncation(worst)`` takes the largest truncation bound per layer of the pairs' Mehler sums (it refuses
    the run, before anything is renamed into place, when they miss the tolerance).
    ``finite(run)`` (the finite-width pass of ``kernels``) then computes G with the same blocks and cluster,
    into the same sink: the store is renamed into place only once G is in it too."""
    n = plan.x.shape[0]
    chunk = int(chunk_size or DEFAULT_CHUNK)
    zarr_out = out is not None and str(out).endswith(".zarr")
    if zarr_out:
        _check_memory(
            result.activation, min(chunk, n), 2 * plan.n_store, 1 + plan.theta, plan.coef.nbytes + plan.tails.nbytes
        )
        sink = _Zarr(str(out), plan, result.layers, n, chunk)
    else:
        _check_memory(result.activation, n, plan.n_store, 1 + plan.theta, plan.coef.nbytes + plan.tails.nbytes)
        sink = _Memory(plan, n)
    blocks = block_edges(n, chunk)
    client, cluster = _client(scheduler) if scheduler is not None else (None, None)
    try:
        worst = np.zeros(plan.K.shape[0])
        if client is None:
            for done, edges in enumerate(blocks, start=1):
                kb, tb, err = compute_block(plan, *edges)
                sink.put(*edges, kb, tb)
                worst = np.maximum(worst, err)
                if progress is not None:
                    progress(done, len(blocks))
        else:
            worst = _on_cluster(client, plan, blocks, sink, progress)
        truncation(worst)
        if finite is not None:
            finite(_metric_runner(plan, blocks, sink, client, progress))
        result.K, result.Theta = sink.finish()
        if finite is not None:
            result.G = sink.read_g() if not zarr_out else sink.final["G"]
    except BaseException:
        sink.abandon()
        raise
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    if out is not None and not zarr_out:
        result.save(str(out))
    return result


def _on_cluster(client, plan: Plan, blocks, sink, progress: Callable | None) -> np.ndarray:
    from distributed import as_completed

    shared = client.scatter(plan, broadcast=True)
    futures = {client.submit(compute_block, shared, *edges, pure=False): edges for edges in blocks}
    worst = np.zeros(plan.K.shape[0])
    for done, future in enumerate(as_completed(futures), start=1):
        kb, tb, err = future.result()
        sink.put(*futures[future], kb, tb)
        worst = np.maximum(worst, err)
        if progress is not None:
            progress(done, len(blocks))
    return worst


def _metric_runner(plan: Plan, blocks, sink, client, progress: Callable | None):
    """The finite-width pass over the same blocks (``finite.mean_kernel`` may run it more than once)."""
    from .finite import compute_metric_block

    def run(metric):
        sink.start_g((plan.n_store, metric.order + 1, plan.x.shape[0], plan.x.shape[0]))
        worst = np.zeros(plan.K.shape[0])
        if client is None:
            results = ((edges, compute_metric_block(plan, metric, *edges)) for edges in blocks)
        else:
            from distributed import as_completed

            shared = client.scatter((plan, metric), broadcast=True)
            futures = {client.submit(_metric_task, shared, *edges, pure=False): edges for edges in blocks}
            results = ((futures[f], f.result()) for f in as_completed(futures))
        for done, (edges, (gb, err)) in enumerate(results, start=1):
            sink.put_g(*edges, gb)
            worst = np.maximum(worst, err)
            if progress is not None:
                progress(done, len(blocks))
        return sink.read_g(), worst

    return run


def _metric_task(shared, r0, r1, c0, c1):
    from .finite import compute_metric_block

    plan, metric = shared
    return compute_metric_block(plan, metric, r0, r1, c0, c1)
