"""The command line: `fastmlp <command>` or `python -m fastmlp <command>`.

One function per subcommand: add_<command>_parser declares its options, cmd_<command>
runs it and returns the exit status.

    fastmlp train                      # the main job: the bundled digits, >= 95% test accuracy
    fastmlp train --hidden 64 --activation relu --lr 0.1 --patience 5 --save digits.npz
    fastmlp train --data ~/mnist --hidden 100 --threads 2   # MNIST IDX files in a directory
    mpirun -n 4 fastmlp train --data ~/mnist   # data-parallel over 4 MPI processes
    fastmlp plot --out-dir docs/img    # the pictures, as PNG files
    fastmlp bench --quick              # samples/s: native vs numpy (and PyTorch)

Exit status: 0 on success, 2 for a usage error (bad option or value), 1 when the work
itself fails (a missing or malformed data file, a write error); errors are one line on
stderr, without a traceback.

Under an MPI launcher with several processes, `fastmlp train` trains data-parallel over
MPI.COMM_WORLD (fastmlp.distributed): rank 0 prints and saves, any rank's error ends
every rank (comm.Abort with the exit status) after that rank prints it.
"""
import argparse
import contextlib
import os
import sys
from pathlib import Path

import numpy as np

from . import data
from .backend import default_backend, native_unavailable
from .model import MLP
from .specs import DTYPES
from .training import format_epoch


class CommandError(Exception):
    """The command could not do its work (exit status 1): bad data, unwritable output."""


def activation_arg(text):
    """'relu' or 'leaky_relu:0.2' / 'elu:0.5' / 'maxout:3' -> an activation spec."""
    name, _, param = text.partition(":")
    if not param:
        return name
    try:
        return name, int(param) if name == "maxout" else float(param)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad parameter in {text!r}") from None


def fraction_arg(text):
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text}")
    return value


def positive_int_arg(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def add_data_options(p):
    p.add_argument("--data", default="digits", metavar="SOURCE",
                   help="'digits' (the bundled 8x8 digits, the default), a directory of "
                        "MNIST/Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz]...), "
                        "a .npz file with arrays X and y (optionally X_test, y_test), or a "
                        ".csv file of numbers with one label column")
    p.add_argument("--label-column", type=int, default=-1, metavar="INDEX",
                   help="CSV: which column holds the labels (default: -1, the last)")
    p.add_argument("--val-size", type=fraction_arg, default=0.2, metavar="FRACTION",
                   help="share of the training rows held out for validation (default: 0.2)")
    p.add_argument("--test-size", type=fraction_arg, default=0.2, metavar="FRACTION",
                   help="share of the rows held out for testing when the data has no test "
                        "set of its own (default: 0.2)")


class Dataset:
    """A classification data set cut into train/validation/test, labels coded 0..K-1."""

    def __init__(self, name, train, val, test, classes, image_shape=None):
        self.name, self.train, self.val, self.test = name, train, val, test
        self.classes, self.image_shape = classes, image_shape

    def describe(self):
        return (f"{self.name}: {len(self.train[0])} train, {len(self.val[0])} validation, "
                f"{len(self.test[0])} test rows, {self.train[0].shape[1]} features, "
                f"{len(self.classes)} classes")


def _read_table(path, label_column):
    """(X, labels) from a CSV file of numbers, with or without one header row."""
    with open(path) as f:
        first = f.readline()
    try:
        [float(v) for v in first.split(",")]
        skip = 0
    except ValueError:
        skip = 1   # a header row
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
    except ValueError as exc:
        raise CommandError(f"{path}: not a CSV table of numbers ({exc})") from None
    if table.shape[1] < 2:
        raise CommandError(f"{path}: expected feature columns and a label column, got "
                           f"{table.shape[1]} column(s)")
    if not -table.shape[1] <= label_column < table.shape[1]:
        raise CommandError(f"--label-column {label_column}: {path} has {table.shape[1]} columns")
    return np.delete(table, label_column, axis=1), table[:, label_column]


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
    except (OSError, ValueError) as exc:
        raise CommandError(f"{path}: cannot read as .npz ({exc})") from None
    if "X" not in arrays or "y" not in arrays:
        raise CommandError(f"{path}: expected arrays named X and y, found "
                           f"{', '.join(arrays) or 'none'}")
    test = (arrays["X_test"], arrays["y_test"]) if "X_test" in arrays else None
    return arrays["X"], arrays["y"], test


def load_dataset(args):
    """The data set named by --data, split by --val-size/--test-size with --seed."""
    source, dtype, seed = args.data, args.dtype, args.seed
    test, image_shape = None, None
    if source == "digits":
        X, y = data.load_digits(dtype)
        image_shape, name = (8, 8), "digits"
    else:
        path = Path(source).expanduser()
        name = path.name
        if not path.exists():
            raise CommandError(f"--data {source}: no such file or directory (expected "
                               "'digits', an IDX directory, a .npz or a .csv file)")
        try:
            if path.is_dir():
                from .data.idx import load_mnist
                (X, y), test = load_mnist(path, dtype)
                side = int(round(np.sqrt(X.shape[1])))
                image_shape = (side, side) if side * side == X.shape[1] else None
            elif path.suffix.lower() == ".npz":
                X, y, test = _read_npz(path)
            elif path.suffix.lower() == ".csv":
                X, y = _read_table(path, args.label_column)
            else:
                raise CommandError(f"--data {source}: expected 'digits', an IDX directory, "
                                   "a .npz or a .csv file")
        except (OSError, ValueError) as exc:   # unreadable or malformed files
            raise CommandError(str(exc)) from None
    X = np.asarray(X)
    if X.ndim == 3 and source != "digits":   # images (n, rows, cols) in a .npz
        image_shape, X = X.shape[1:], X.reshape(len(X), -1)
        if test is not None:
            test = (np.asarray(test[0]).reshape(len(test[0]), -1), test[1])
    if X.ndim != 2 or len(X) != len(y) or X.dtype.kind not in "biuf":
        raise CommandError(f"--data {source}: expected numbers X (n, features) and one label "
                           f"per row, got X {X.dtype} {X.shape} and {len(y)} labels")
    classes, codes = np.unique(np.concatenate([y, test[1]]) if test else y, return_inverse=True)
    y = codes[:len(y)]
    if len(classes) < 2:
        raise CommandError(f"--data {source}: expected at least 2 classes, got {len(classes)}")
    if test is None:
        train, val, test = data.train_val_test_split(X.astype(dtype), y, val_size=args.val_size,
                                                     test_size=args.test_size, seed=seed)
    else:
        test = (np.asarray(test[0], dtype=dtype), codes[len(y):])
        train, val, _ = data.train_val_test_split(X.astype(dtype), y, val_size=args.val_size,
                                                  test_size=0, seed=seed)
    for part, rows in (("train", train), ("test", test)):
        if len(rows[0]) == 0:
            raise CommandError(f"--data {source}: the {part} split is empty; use more rows "
                               "or other --val-size/--test-size")
    return Dataset(name, train, val, test, classes, image_shape)


# Set by MPI launchers in each process they start: MPICH/Intel MPI (and Slurm's srun with
# PMI), Open MPI, MVAPICH.
MPI_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_mpi_size():
    """The number of processes an MPI launcher started, as this process's environment
    says (1 when it was not started by one)."""
    for name in MPI_SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def mpi_comm():
    """MPI.COMM_WORLD when an MPI launcher started several processes, else None."""
    size = launched_mpi_size()
    if size <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise CommandError(f"started by an MPI launcher as one of {size} processes, but "
                           "mpi4py is not installed: pip install 'fastmlp[mpi]'") from None
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


def set_threads(threads):
    if threads is not None:
        from . import set_num_threads
        set_num_threads(threads)


def add_train_parser(commands):
    p = commands.add_parser(
        "train", help="train an MLP (default: on the bundled handwritten digits)",
        description="Train an MLP classifier (default: the bundled 8x8 digits, 60% train, "
                    "20% validation, 20% test), print a table per epoch behind a progress "
                    "bar, then the test accuracy.")
    add_data_options(p)
    p.add_argument("--hidden", type=int, nargs="+", default=[30, 30], metavar="UNITS",
                   help="hidden layer widths (default: 30 30, the lecture's network)")
    p.add_argument("--activation", type=activation_arg, nargs="+", default=["sigmoid"],
                   metavar="NAME[:PARAM]",
                   help="one for all hidden layers or one per layer: sigmoid, tanh, relu, "
                        "leaky_relu[:slope], elu[:alpha], maxout[:k], identity "
                        "(default: sigmoid)")
    p.add_argument("--dropout", type=fraction_arg, nargs="+", default=[0.0], metavar="RATE",
                   help="dropout rate of the hidden layers while training, one for all or one "
                        "per layer, in [0, 1) (default: 0, none)")
    p.add_argument("--batch-norm", action="store_true",
                   help="batch-normalise every hidden layer's pre-activations (default: off)")
    p.add_argument("--output", choices=["softmax", "sigmoid"], default="softmax",
                   help="output layer: softmax + cross-entropy, or one sigmoid unit per class "
                        "+ binary cross-entropy (accuracy then counts rows with every unit "
                        "right) (default: softmax)")
    p.add_argument("--epochs", type=int, default=30, help="passes over the data (default: 30)")
    p.add_argument("--batch-size", type=int, default=10, help="mini-batch rows (default: 10)")
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="sgd",
                   help="torch.optim's SGD, Adam or AdamW (default: sgd, the lecture's)")
    p.add_argument("--momentum", type=float, default=0.0,
                   help="momentum of --optimizer sgd (default: 0)")
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum (sgd)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: 0.5 for sgd, 0.001 for adam and adamw)")
    p.add_argument("--weight-decay", type=float, default=None,
                   help="weight decay: L2 for sgd and adam, decoupled for adamw (default: 0, "
                        "0.01 for adamw)")
    p.add_argument("--patience", type=int, default=None,
                   help="stop after this many epochs without a better validation loss and "
                        "keep the best weights (default: train every epoch)")
    p.add_argument("--backend", choices=["numpy", "native"], default=None,
                   help="kernels to run on (default: native if built, else numpy)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="(default: float32)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the split, the weights and the shuffles (default: 0)")
    p.add_argument("--threads", type=positive_int_arg, default=None,
                   help="threads for the native kernels (default: all cores; under mpirun, "
                        "cores // processes on the host)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar, only the per-epoch lines")
    p.add_argument("--save", metavar="PATH", help="write the trained model to this .npz file")
    p.set_defaults(run=cmd_train)


def pick_backend(requested):
    if requested is None and native_unavailable():
        print("the native kernels are not built: running on numpy")
    return requested or default_backend()


def make_optimizer(args):
    """The fastmlp.optim optimizer the options describe (a usage error if they clash)."""
    from . import optim
    settings = {} if args.weight_decay is None else {"weight_decay": args.weight_decay}
    if args.optimizer == "sgd":
        settings.update(lr=0.5 if args.lr is None else args.lr, momentum=args.momentum,
                        nesterov=args.nesterov)
    else:
        if args.momentum or args.nesterov:
            raise ValueError(f"--momentum and --nesterov go with --optimizer sgd, not "
                             f"{args.optimizer}")
        if args.lr is not None:
            settings["lr"] = args.lr
    return optim.make(args.optimizer, **settings)


def one_hot_if(output, y, k, dtype):
    """Labels as the output layer takes them: as they are for softmax, a 0/1 matrix for
    one sigmoid unit per class."""
    return y if output == "softmax" else np.eye(k, dtype=dtype)[y]


def cmd_train(args):
    args.comm = mpi_comm()
    if args.comm is None or args.comm.Get_rank() == 0:
        return train(args, args.comm)
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        return train(args, args.comm)   # rank 0 prints for everyone


def check_save_path(path):
    """--save's directory exists and takes a new file, checked before training, so a long
    run is not lost at its end."""
    from .model_file import target_path
    try:
        directory = os.path.dirname(os.path.abspath(target_path(path))) or "."
    except ValueError as exc:
        raise CommandError(f"--save {path}: {exc}") from None
    if not os.path.isdir(directory):
        raise CommandError(f"--save {path}: no such directory {directory}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CommandError(f"--save {path}: the directory {directory} is not writable")


def train(args, comm):
    if args.save:
        check_save_path(args.save)
    ds = load_dataset(args)
    set_threads(args.threads)
    activation = args.activation[0] if len(args.activation) == 1 else args.activation
    backend = pick_backend(args.backend)
    k = len(ds.classes)
    dropout = args.dropout[0] if len(args.dropout) == 1 else args.dropout
    net = MLP([ds.train[0].shape[1], *args.hidden, k], activation=activation,
              output=args.output, backend=backend, dtype=args.dtype, seed=args.seed,
              dropout=dropout, batch_norm=args.batch_norm)
    print(f"{net}\n{ds.describe()}")
    if comm is not None:
        from .distributed import threads_per_rank
        threads = args.threads or threads_per_rank(comm)
        print(f"data-parallel over {comm.Get_size()} MPI processes, {threads} thread(s) each")
    train, val, test = ((X, one_hot_if(args.output, y, k, args.dtype))
                        for X, y in (ds.train, ds.val, ds.test))
    progress = True if args.progress else (
        lambda h: print(format_epoch(h, len(h.loss) - 1), flush=True))
    hist = net.fit(*train, epochs=args.epochs, batch_size=args.batch_size,
                   optimizer=make_optimizer(args),
                   validation_data=val if len(val[0]) else None,
                   patience=args.patience, progress=progress, comm=comm)
    if hist.stopped_epoch is not None:
        print(f"early stop after epoch {hist.stopped_epoch + 1}; "
              f"kept epoch {hist.best_epoch + 1}")
    print(f"test accuracy: {net.score(*test):.4f}")
    if args.save:
        try:
            net.save(args.save, comm=comm)
        except OSError as exc:
            raise CommandError(f"--save {args.save}: {exc.strerror or exc}") from None
        print(f"saved to {args.save}")
    return 0


# ---------------------------------------------------------------- fastmlp plot

PLOTS = ("curves", "boundaries", "templates", "universal", "gradients")
DEEP = [30] * 5   # the hidden layers of the vanishing-gradient picture
TEMPLATE_ROWS = 5000   # enough for clear templates, few enough for numpy on MNIST


def plot_name_arg(text):
    if text not in PLOTS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(PLOTS)}, got {text!r}")
    return text


def add_plot_parser(commands):
    p = commands.add_parser(
        "plot", help="draw the pictures as PNG files",
        description="Write PNG pictures: curves.png (train/validation loss and accuracy per "
                    "epoch on a small training set, early stopping marked), boundaries.png "
                    "(a logistic unit against a small MLP on blobs, XOR, circles and moons), "
                    "templates.png (first-layer weights as images), universal.png (a curve "
                    "approximated by sums of sigmoid towers), gradients.png (each layer's "
                    "weight-gradient norm over training in a deep sigmoid network, a ReLU one "
                    "and a batch-normalised sigmoid one: the vanishing gradient and its "
                    "cures). Needs matplotlib.")
    p.add_argument("names", nargs="*", type=plot_name_arg, metavar="NAME",
                   help=f"which pictures: {', '.join(PLOTS)} (default: all)")
    p.add_argument("--out-dir", default=".", metavar="DIR",
                   help="directory for the PNG files, created if missing (default: .)")
    add_data_options(p)
    p.add_argument("--train-rows", type=positive_int_arg, default=200, metavar="N",
                   help="curves: training rows, few enough to overfit (default: 200)")
    p.add_argument("--epochs", type=positive_int_arg, default=150,
                   help="curves: at most this many epochs; templates: at most 40; gradients: "
                        "at most 10 (default: 150)")
    p.add_argument("--backend", choices=["numpy", "native"], default=None,
                   help="kernels to run on (default: native if built, else numpy)")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.set_defaults(run=cmd_plot, dtype="float32")


def cmd_plot(args):
    try:
        from . import plots
        plots._figure(1, 1)
    except ImportError as exc:
        raise CommandError(str(exc)) from None
    out = Path(args.out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"--out-dir {out}: {exc.strerror or exc}") from None
    names = args.names or PLOTS
    backend = pick_backend(args.backend)
    written = []

    def save(name, draw):
        path = out / f"{name}.png"
        try:
            draw(path)
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror or exc}") from None
        written.append(path)
        print(f"wrote {path}")

    if "curves" in names or "templates" in names or "gradients" in names:
        ds = load_dataset(args)
        has_val = len(ds.val[0]) > 0
        k = len(ds.classes)
    if "curves" in names:
        X, y = ds.train[0][:args.train_rows], ds.train[1][:args.train_rows]
        net = MLP([X.shape[1], 100, k], activation="sigmoid", backend=backend, seed=args.seed)
        # a large step on few rows: the validation loss turns up, early stopping shows it
        hist = net.fit(X, y, epochs=args.epochs, batch_size=10, lr=2.0,
                       validation_data=ds.val if has_val else None,
                       patience=max(10, args.epochs // 3) if has_val else None)
        save("curves", lambda path: plots.training_curves(
            hist, path=path, title=f"{ds.name}: {len(X)} training rows, 100 sigmoid units"))
    if "templates" in names:
        if ds.image_shape is None:
            raise CommandError(f"--data {args.data}: templates need square images")
        X, y = ds.train[0][:TEMPLATE_ROWS], ds.train[1][:TEMPLATE_ROWS]
        net = MLP([X.shape[1], 16, k], activation="sigmoid", backend=backend, seed=args.seed)
        # weight decay fades the initial noise on pixels that never light up
        net.fit(X, y, epochs=min(args.epochs, 40), batch_size=10, lr=0.5, weight_decay=1e-3)
        save("templates", lambda path: plots.weight_templates(
            net, ds.image_shape, path=path,
            title=f"{ds.name}: first-layer templates of 16 sigmoid units"))
    if "boundaries" in names:
        cases = {"blobs": data.make_blobs(200, seed=args.seed),
                 "XOR": data.make_xor(200, seed=args.seed),
                 "circles": data.make_circles(200, seed=args.seed),
                 "moons": data.make_moons(200, seed=args.seed)}
        save("boundaries", lambda path: plots.logistic_vs_mlp(
            cases, backend=backend, seed=args.seed, path=path))
    if "universal" in names:
        save("universal", lambda path: plots.universal_approximation(path=path))
    if "gradients" in names:
        X, y = ds.train
        sizes = [X.shape[1], *DEEP, k]
        kinds = {"sigmoid": ("sigmoid", False), "relu": ("relu", False),
                 "sigmoid + batch norm": ("sigmoid", True)}
        nets = {f"{name} {'-'.join(map(str, sizes))}": MLP(
                    sizes, activation=act, batch_norm=bn, backend=backend, seed=args.seed)
                for name, (act, bn) in kinds.items()}
        rates = dict(zip(nets, (0.5, 0.05, 0.5)))   # plain SGD at a rate each trains well with
        save("gradients", lambda path: plots.gradient_norms(
            nets, X, y, epochs=min(args.epochs, 10), lr=rates, path=path))
    return 0


# ---------------------------------------------------------------- fastmlp bench

RUNNERS = ("numpy", "native", "torch")


def add_bench_parser(commands):
    from .bench import CASES
    p = commands.add_parser(
        "bench", help="samples/s for one training epoch: native vs numpy (and PyTorch)",
        description="Time one training epoch on synthetic data for the design's cases "
                    "(seed 784-30-30-10 sigmoid batch 10, mid 784-256-256-10 relu batch 64, "
                    "big 784-1024-1024-10 relu batch 256) and print samples/s with ratios "
                    "to the NumPy reference, all measured in this run. PyTorch (CPU) is "
                    "included when it is installed.")
    p.add_argument("--quick", action="store_true",
                   help="a short epoch of a few batches, timed once: a smoke run")
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES),
                   help="(default: all)")
    p.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES),
                   help="(default: both)")
    p.add_argument("--runners", nargs="+", choices=RUNNERS, default=list(RUNNERS),
                   help="(default: all that are available)")
    p.add_argument("--repeat", type=positive_int_arg, default=3,
                   help="timed epochs per entry, taken in turns with the other runners; the "
                        "best is kept (default: 3; 1 with --quick)")
    p.add_argument("--threads", type=positive_int_arg, default=None,
                   help="threads for the native kernels (default: all cores)")
    p.set_defaults(run=cmd_bench)


def cmd_bench(args):
    from .bench import CASES, QUICK_BATCHES, make_runner, take_turns
    set_threads(args.threads)
    repeat = 1 if args.quick else args.repeat
    unavailable = {}
    if "native" in args.runners and native_unavailable():
        unavailable["native"] = "native kernels not built"
    print(f"{'case':<6} {'dtype':<8} {'runner':<7} {'samples/s':>12} {'vs numpy':>9}")
    for case in args.cases:
        n = QUICK_BATCHES * CASES[case][2] if args.quick else None
        for dtype in args.dtypes:
            epochs = {}
            for runner in args.runners:
                if runner in unavailable:
                    continue
                epoch, samples = make_runner(runner, case, dtype, n)
                if epoch is None:
                    unavailable[runner] = "not installed"
                    continue
                epochs[runner] = epoch
            rates = {runner: samples / min(seconds)   # the runners' best turns
                     for runner, seconds in take_turns(epochs, repeat).items()}
            for runner, rate in rates.items():
                ratio = f"{rate / rates['numpy']:8.2f}x" if "numpy" in rates else f"{'n/a':>9}"
                print(f"{case:<6} {dtype:<8} {runner:<7} {rate:12,.0f} {ratio}", flush=True)
    for runner, why in unavailable.items():
        print(f"({runner}: {why})")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="fastmlp", description="Multilayer perceptrons "
                                     "trained fast on the CPU.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    add_train_parser(commands)
    add_plot_parser(commands)
    add_bench_parser(commands)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, FloatingPointError) as exc:   # the work failed: data, files, divergence
        return fail(args, f"error: {exc}", 1)
    except (ValueError, NotImplementedError, RuntimeError) as exc:   # bad option values
        return fail(args, f"error: {exc}", 2)
    except KeyboardInterrupt as exc:
        return fail(args, str(exc) or "interrupted", 130)


def fail(args, message, status):
    """Print the one-line message; under MPI, name the rank and end every rank (the others
    may be waiting for this one)."""
    comm = getattr(args, "comm", None)
    if comm is None:
        print(f"fastmlp {args.command}: {message}", file=sys.stderr)
        return status
    print(f"fastmlp {args.command}: MPI rank {comm.Get_rank()} of {comm.Get_size()}: {message}",
          file=sys.stderr, flush=True)
    comm.Abort(status)
