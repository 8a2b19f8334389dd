"""Kernel matrices block by block: zarr stores and a real dask.distributed cluster, identical to one process."""

from __future__ import annotations

import numpy as np
import pytest

from pdlt import generated
from pdlt.runtime import scaleout
from pdlt.runtime.errors import FlowError

zarr = pytest.importorskip("zarr")
distributed = pytest.importorskip("distributed")


def _inputs():
    x = np.random.default_rng(2).normal(size=(23, 5))
    x[4] = x[3] + 1e-8
    x[7] = -x[6]
    return x


def test_blocks_cover_the_upper_triangle_once():
    cells = np.zeros((23, 23), dtype=int)
    for r0, r1, c0, c1 in scaleout.block_edges(23, 7):
        assert r0 <= c0
        cells[r0:r1, c0:c1] += 1
    assert np.all(np.triu(cells) == np.triu(np.ones_like(cells))) and cells[np.tril_indices(23, -1)].max() <= 1


@pytest.mark.parametrize("name", ["tanh", "relu"])
def test_zarr_store_holds_the_single_process_numbers(name, tmp_path):
    mod = generated.load(name)
    x = _inputs()
    want = mod.kernel(x, 4, C_b=0.1, C_W=1.4, layers=[2, 4])
    got = mod.kernel(x, 4, C_b=0.1, C_W=1.4, layers=[2, 4], out=str(tmp_path / "k.zarr"), chunk_size=6)
    np.testing.assert_array_equal(got.K[:], want.K)
    np.testing.assert_array_equal(got.Theta[:], want.Theta)
    store = zarr.open_group(str(tmp_path / "k.zarr"), mode="r")
    np.testing.assert_array_equal(store["layers"][:], [2, 4])
    assert [p.name for p in tmp_path.iterdir()] == ["k.zarr"]


def test_a_failed_run_leaves_no_store(tmp_path, monkeypatch):
    calls = []

    def failing(plan, *edges):
        calls.append(edges)
        if len(calls) == 2:
            raise FlowError("stop")
        return scaleout.compute_block(plan, *edges)

    monkeypatch.setattr(scaleout, "compute_block", failing)
    with pytest.raises(FlowError, match="stop"):
        generated.load("relu").kernel(_inputs(), 3, out=str(tmp_path / "k.zarr"), chunk_size=6)
    assert list(tmp_path.iterdir()) == []


def test_a_real_cluster_gives_identical_results(tmp_path):
    """A scheduler and two worker processes on localhost; every block computed on a worker."""
    mod = generated.load("tanh")
    x = _inputs()
    want = mod.kernel(x, 4, C_b=0.1, C_W=1.4)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        seen = []
        got = mod.kernel(x, 4, C_b=0.1, C_W=1.4, scheduler=cluster.scheduler_address, chunk_size=7,
                         progress=lambda done, total: seen.append((done, total)))  # fmt: skip
        with distributed.Client(cluster) as client:
            assert len(client.scheduler_info()["workers"]) == 2
    np.testing.assert_array_equal(got.K, want.K)
    np.testing.assert_array_equal(got.Theta, want.Theta)
    assert seen[-1] == (len(scaleout.block_edges(23, 7)),) * 2


def _g_inputs():
    x = np.random.default_rng(2).normal(size=(23, 5))
    x[4] = x[3]  # an identical pair: the diagonal copied, in every block
    return x


def test_finite_width_mean_kernel_in_a_store_and_on_a_cluster_is_the_single_process_one(tmp_path):
    """G (order 2) block by block into a zarr store, and on a scheduler with two worker processes: bit for bit
    the single-process G and its error bounds; the store holds layers, K, Theta and G, and nothing else is left."""
    mod = generated.load("tanh")
    x = _g_inputs()
    kw = {"C_b": 0.1, "C_W": 1.4, "layers": [2, 4], "tensors": ("K", "Theta", "G"), "order": 2}
    want = mod.kernel(x, 4, **kw)
    got = mod.kernel(x, 4, **kw, out=str(tmp_path / "g.zarr"), chunk_size=6)
    np.testing.assert_array_equal(got.G[:], want.G)
    store = zarr.open_group(str(tmp_path / "g.zarr"), mode="r")
    assert sorted(store.keys()) == ["G", "K", "Theta", "layers"] and store["G"].shape == (2, 3, 23, 23)
    assert [p.name for p in tmp_path.iterdir()] == ["g.zarr"]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        got = mod.kernel(x, 4, **kw, scheduler=cluster.scheduler_address, chunk_size=7)
    np.testing.assert_array_equal(got.G, want.G)
    np.testing.assert_array_equal(got.G_error, want.G_error)


def test_a_failed_finite_width_pass_leaves_no_store(tmp_path, monkeypatch):
    from pdlt.runtime import finite

    def failing(*args):
        raise FlowError("stop")

    monkeypatch.setattr(finite, "compute_metric_block", failing)
    with pytest.raises(FlowError, match="stop"):
        generated.load("tanh").kernel(_g_inputs(), 3, tensors=("G",), out=str(tmp_path / "g.zarr"), chunk_size=6)
    assert list(tmp_path.iterdir()) == []


def test_bad_block_size_and_output_are_refused():
    with pytest.raises(FlowError, match="chunk_size must be an integer >= 1"):
        generated.load("relu").kernel(_inputs(), 2, chunk_size=0)
    with pytest.raises(FlowError, match="out must name a .npz file or a .zarr store"):
        generated.load("relu").kernel(_inputs(), 2, out="k.txt")
