"""The README's API examples run as printed, without warnings."""
import warnings
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def example_after(heading):
    """The first ```python block after `heading` in the README."""
    return README.read_text().split(heading, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


def run_examples(*headings):
    """The README's examples after `headings`, in one namespace, warnings as errors."""
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for heading in headings:
            exec(compile(example_after(heading), str(README), "exec"), namespace)
    return namespace


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run_examples("## Using it")
    out = capsys.readouterr().out
    accuracy = float(out.split("test accuracy ", 1)[1].split(",")[0])
    assert accuracy >= 0.95
    assert (tmp_path / "digits.npz").exists()


def test_readme_onnx_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    namespace = run_examples("## Using it", "**ONNX**")
    net, X_test = namespace["net"], namespace["X_test"]
    np.testing.assert_allclose(namespace["proba"], net.forward(X_test), rtol=1e-5, atol=1e-6)
