"""pdlt kernel: the .npz it writes, its summary, and one clear line with exit 2 on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pdlt import generated
from pdlt.codegen.cli import main


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PDLT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def inputs(tmp_path):
    x = np.random.default_rng(0).normal(size=(12, 5))
    path = tmp_path / "x.npy"
    np.save(path, x)
    return x, str(path)


def test_writes_the_arrays_of_the_python_api(inputs, tmp_path, capsys):
    x, path = inputs
    out = tmp_path / "k.npz"
    argv = ["kernel", "tanh", "--inputs", path, "--depth", "4", "--C-b", "0.1", "--C-W", "1.5,1.6,1.7,1.8",
            "--lambda-W", "2", "--layers", "2,4", "--out", str(out), "--json"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layers"] == [2, 4] and summary["tensors"] == ["K", "Theta"] and summary["method"] == "hermite"
    assert summary["C_W"] == [1.5, 1.6, 1.7, 1.8] and summary["lambda_W"] == [2.0] * 4
    want = generated.load("tanh").kernel(x, 4, C_b=0.1, C_W=[1.5, 1.6, 1.7, 1.8], lambda_W=2.0, layers=[2, 4])
    with np.load(out) as data:
        np.testing.assert_array_equal(data["layers"], [2, 4])
        assert data["K"].shape == data["Theta"].shape == (2, 12, 12)
        np.testing.assert_array_equal(data["K"], want.K)
        np.testing.assert_array_equal(data["Theta"], want.Theta)


def test_writes_the_finite_width_mean_kernel(inputs, tmp_path, capsys):
    """--tensors G --order 2 --widths: G (layers, 3, N, N) as the API computes it, its bound in the summary."""
    x, path = inputs
    out = tmp_path / "g.npz"
    argv = ["kernel", "erf", "--inputs", path, "--depth", "3", "--C-W", "1.5", "--tensors", "K,G", "--order", "2",
            "--widths", "16,32", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "G error bound" in text
    want = generated.load("erf").kernel(x, 3, C_W=1.5, tensors=("K", "G"), order=2, widths=[16, 32])
    with np.load(out) as data:
        assert data["G"].shape == (3, 3, 12, 12) and "Theta" not in data
        np.testing.assert_array_equal(data["G"], want.G)


def test_the_output_gets_the_usual_file_mode(inputs, tmp_path):
    """Written through a temporary file (mkstemp, mode 0600), the .npz still gets 0666 less the umask."""
    import os

    _, path = inputs
    out = tmp_path / "m.npz"
    assert main(["kernel", "relu", "--inputs", path, "--depth", "2", "--out", str(out)]) == 0
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def test_critical_initialization_is_stated(inputs, tmp_path, capsys):
    _, path = inputs
    assert (
        main(["kernel", "relu", "--inputs", path, "--depth", "3", "--critical", "--out", str(tmp_path / "k.npz")]) == 0
    )
    err = capsys.readouterr().err
    assert "critical point of relu: C_b = 0, C_W = 2" in err and "wrote" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tensors", "K,R"], "R is not defined for relu: it needs sigma'' twice"),
        (["--tensors", "K,G", "--order", "3"], "order must be one of 1, 2"),
        (["--order", "2"], "--order is the order of the finite-width mean kernel"),
        (["--C-W", "1,2"], "one per layer 1..3"),
        (["--C-b", "a"], "--C-b takes a number"),
        (["--layers", "1,x"], "--layers takes"),
        (["--layers", "7"], "between 1 and depth"),
        (["--critical", "--C-W", "2"], "not both"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(inputs, tmp_path, capsys, extra, message):
    _, path = inputs
    out = tmp_path / "k.npz"
    assert main(["kernel", "relu", "--inputs", path, "--depth", "3", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_unreadable_inputs_and_wrong_output_suffix(tmp_path, capsys):
    np.savez(tmp_path / "two.npz", a=np.ones(2), b=np.ones(3))
    bad = tmp_path / "bad.npy"
    bad.write_text("not numpy")
    for argv, message in (
        (["--inputs", str(tmp_path / "missing.npy"), "--out", str(tmp_path / "k.npz")], "cannot read --inputs"),
        (["--inputs", str(bad), "--out", str(tmp_path / "k.npz")], "cannot read --inputs"),
        (["--inputs", str(tmp_path / "two.npz"), "--out", str(tmp_path / "k.npz")], "several arrays"),
        (["--inputs", str(bad), "--out", str(tmp_path / "k.txt")], "--out must name a .npz file"),
    ):
        assert main(["kernel", "relu", "--depth", "2", *argv]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "k.npz").exists()


def test_zarr_store_by_blocks_equals_the_npz(inputs, tmp_path, capsys):
    zarr = pytest.importorskip("zarr")
    _, path = inputs
    base = ["kernel", "gelu", "--inputs", path, "--depth", "3", "--C-W", "1.3"]
    assert main([*base, "--out", str(tmp_path / "k.npz")]) == 0
    assert main([*base, "--out", str(tmp_path / "k.zarr"), "--chunk-size", "5"]) == 0
    store = zarr.open_group(str(tmp_path / "k.zarr"), mode="r")
    with np.load(tmp_path / "k.npz") as data:
        for key in ("layers", "K", "Theta"):
            np.testing.assert_array_equal(store[key][:], data[key])
    assert main([*base, "--out", str(tmp_path / "k.zarr"), "--chunk-size", "0"]) == 2
    assert "--chunk-size must be >= 1" in capsys.readouterr().err


def test_the_books_learning_rates_are_a_named_option(tmp_path, capsys):
    """--rates equivalence: tanh (K* = 0, p_perp = 1) gets lambda_b = lambda~_b / l, lambda_W = lambda~_W (9.96);
    ReLU (scale-invariant) lambda~ / L (9.94); an activation outside both classes is refused in one line."""
    x = tmp_path / "x.npy"
    np.save(x, np.ones((1, 4)))
    out = str(tmp_path / "k.npz")
    assert main(["kernel", "tanh", "--inputs", str(x), "--depth", "4", "--rates", "equivalence", "--lambda-b", "2",
                 "--out", out, "--json"]) == 0  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert data["lambda_b"] == pytest.approx([2, 1, 2 / 3, 1 / 2]) and data["lambda_W"] == pytest.approx([1] * 4)
    assert main(["kernel", "relu", "--inputs", str(x), "--depth", "4", "--critical", "--rates", "equivalence",
                 "--out", out, "--json"]) == 0  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert data["lambda_b"] == pytest.approx([1 / 4] * 4) and data["lambda_W"] == pytest.approx([1 / 4] * 4)
    assert main(["kernel", "gelu", "--inputs", str(x), "--depth", "4", "--rates", "equivalence", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "half-stable" in err and len(err.strip().splitlines()) == 1


def test_four_index_tensors_are_written_with_their_error_bound(tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.array([[1.0, 0.2, 0.1], [0.3, 0.8, -0.4]]))
    out = tmp_path / "k.npz"
    assert main(["kernel", "tanh", "--inputs", str(x), "--depth", "3", "--tensors", "Theta,B,T", "--out", str(out),
                 "--json"]) == 0  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert data["tensors"] == ["K", "Theta", "B", "T"] and len(data["four_index_error_bound"]) == 3
    saved = np.load(out)
    assert saved["B"].shape == (3, 2, 2, 2, 2) and saved["T"].shape == (3, 2, 2, 2, 2)
    assert np.allclose(saved["T"], saved["T"].transpose(0, 4, 3, 2, 1))  # T's reversal symmetry (reference §6.1)
