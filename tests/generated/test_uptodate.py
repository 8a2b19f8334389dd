"""generated/ is exactly what the generator produces now."""

from __future__ import annotations

from pdlt.codegen import generate
from pdlt.codegen.__main__ import main


def test_generated_is_up_to_date():
    drifts = generate.check()
    assert not drifts, "stale: " + ", ".join(str(d.path) for d in drifts) + "; run python -m pdlt.codegen"


def test_check_fails_with_a_diff_when_stale(tmp_path, monkeypatch, capsys):
    for name, text in generate.shipped_files().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "tanh.py").write_text((tmp_path / "tanh.py").read_text().replace("ORDER = 2", "ORDER = 3"))
    monkeypatch.setattr("pdlt.codegen.__main__.check", lambda progress=None: generate.check(tmp_path))
    monkeypatch.setattr("pdlt.codegen.__main__.check_docs", lambda progress=None, with_numbers=True: [])
    assert main(["--check"]) == 1
    captured = capsys.readouterr()
    assert "-ORDER = 3" in captured.out and "+ORDER = 2" in captured.out
    assert "python -m pdlt.codegen" in captured.err


def test_every_registry_activation_is_shipped_at_order_two_or_more():
    from pdlt import generated
    from pdlt.derive.activations import REGISTRY

    assert set(generated.SHIPPED) == set(REGISTRY)
    assert min(generated.SHIPPED.values()) >= 2
