"""The README's API example runs as printed, without warnings."""
import warnings
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    example = text.split("## Using it", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec(compile(example, str(README), "exec"), {})
    out = capsys.readouterr().out
    accuracy = float(out.split("test accuracy ", 1)[1].split(",")[0])
    assert accuracy >= 0.95
    assert (tmp_path / "digits.npz").exists()
