"""The main job: `fastmlp train` (and `python -m fastmlp train`)."""
import re
import subprocess
import sys

import numpy as np
import pytest

from fastmlp import MLP, cli, data


def run(capsys, *argv):
    status = cli.main(["train", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_default_main_job_reaches_95_percent_on_the_digits(capsys):
    status, out, _ = run(capsys)
    assert status == 0
    epochs = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(epochs) == 30 and "val_acc" in epochs[0]
    accuracy = float(re.search(r"^test accuracy: ([0-9.]+)$", out, re.MULTILINE).group(1))
    assert accuracy >= 0.95


def test_options_reach_the_model_and_save_writes_it(capsys, tmp_path):
    path = tmp_path / "digits.npz"
    status, out, _ = run(capsys, "--hidden", "16", "8", "--activation", "relu", "leaky_relu:0.2",
                         "--epochs", "2", "--batch-size", "32", "--lr", "0.1",
                         "--weight-decay", "1e-4", "--backend", "numpy", "--dtype", "float64",
                         "--seed", "3", "--save", str(path))
    assert status == 0 and f"saved to {path}" in out
    net = MLP.load(path)
    assert net.sizes == [64, 16, 8, 10] and net.dtype == "float64"
    assert net.activations == [("relu", 0.0), ("leaky_relu", 0.2)]
    X, y = data.load_digits("float64")
    _, _, (X_test, y_test) = data.train_val_test_split(X, y, seed=3)
    accuracy = float(out.rsplit("test accuracy: ", 1)[1].split()[0])
    assert accuracy == pytest.approx(net.score(X_test, y_test), abs=1e-4)


def test_patience_stops_early(capsys):
    status, out, _ = run(capsys, "--hidden", "64", "--activation", "relu", "--lr", "0.1",
                         "--epochs", "200", "--patience", "2", "--backend", "numpy")
    assert status == 0 and "early stop after epoch" in out
    assert sum(line.startswith("epoch") for line in out.splitlines()) < 200


def test_optimizer_options_reach_the_model(capsys, tmp_path):
    path = tmp_path / "adam.npz"
    status, out, _ = run(capsys, "--optimizer", "adamw", "--lr", "0.01", "--epochs", "2",
                         "--backend", "numpy", "--save", str(path))
    assert status == 0
    opt = MLP.load(path).optimizer
    assert (opt.name, opt.lr, opt.weight_decay) == ("adamw", 0.01, 0.01)
    assert opt.state["epoch"] == 2 and opt.state["step"] == 2 * 108   # 1079 rows in 10s
    status, out, _ = run(capsys, "--momentum", "0.9", "--nesterov", "--epochs", "1",
                         "--backend", "numpy", "--save", str(path))
    opt = MLP.load(path).optimizer
    assert status == 0 and (opt.name, opt.lr, opt.momentum, opt.nesterov) == ("sgd", 0.5, 0.9, True)


@pytest.mark.parametrize("argv,message", [
    (["--optimizer", "adam", "--momentum", "0.9"], "--momentum and --nesterov go with"),
    (["--momentum", "1.5"], "momentum"),
    (["--hidden", "0"], "sizes"),
    (["--activation", "relu", "tanh", "elu"], "one per hidden layer"),
    (["--activation", "swish"], "unknown activation"),
    (["--lr", "-1"], "lr"),
    (["--lr", "nan"], "lr"),
    (["--activation", "elu:inf"], "elu parameter"),
    (["--batch-size", "0"], "batch_size"),
])
def test_bad_values_exit_2_with_a_message(capsys, argv, message):
    status, _, err = run(capsys, "--backend", "numpy", *argv)
    assert status == 2 and message in err and "Traceback" not in err


def test_bad_syntax_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--activation", "elu:wide"])
    assert exit_.value.code == 2 and "bad parameter" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([])


def test_python_dash_m_runs_the_same_command():
    result = subprocess.run([sys.executable, "-m", "fastmlp", "train", "--epochs", "1",
                             "--backend", "numpy"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "test accuracy:" in result.stdout


def test_activation_arg():
    assert cli.activation_arg("relu") == "relu"
    assert cli.activation_arg("maxout:3") == ("maxout", 3)
    assert cli.activation_arg("elu:0.5") == ("elu", 0.5)
    assert np.isnan(cli.activation_arg("elu:nan")[1])


def test_dropout_and_batch_norm_options_reach_the_model(capsys, tmp_path):
    path = tmp_path / "reg.npz"
    status, out, _ = run(capsys, "--hidden", "16", "8", "--dropout", "0.2", "0.5", "--batch-norm",
                         "--epochs", "1", "--backend", "numpy", "--save", str(path))
    assert status == 0, out
    net = MLP.load(path)
    assert net.dropout == [0.2, 0.5] and net.batch_norm == [True, True]
    assert "dropout=[0.2, 0.5], batch_norm=[True, True]" in out


def test_bad_dropout_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        run(capsys, "--dropout", "1.0")
    assert exit_.value.code == 2 and "expected a fraction in [0, 1)" in capsys.readouterr().err
    status, _, err = run(capsys, "--dropout", "0.1", "0.2", "0.3", "--backend", "numpy")
    assert status == 2 and "dropout: expected one rate per hidden layer (2), got 3" in err
