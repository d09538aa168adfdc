"""The command line: `fastmlp <command>` or `python -m fastmlp <command>`.

One function per subcommand: add_<command>_parser declares its options, cmd_<command>
runs it and returns the exit status.

    fastmlp train                      # the main job: the bundled digits, >= 95% test accuracy
    fastmlp train --hidden 64 --activation relu --lr 0.1 --patience 5 --save digits.npz
"""
import argparse
import sys

from . import data
from .model import DTYPES, MLP, missing_ops
from .training import format_epoch


def activation_arg(text):
    """'relu' or 'leaky_relu:0.2' / 'elu:0.5' / 'maxout:3' -> an activation spec."""
    name, _, param = text.partition(":")
    if not param:
        return name
    try:
        return name, int(param) if name == "maxout" else float(param)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad parameter in {text!r}") from None


def default_backend():
    """"native" when its kernels are all built, else "numpy"."""
    try:
        return "numpy" if missing_ops("native") else "native"
    except RuntimeError:                # fastmlp._core is not built
        return "numpy"


def add_train_parser(commands):
    p = commands.add_parser(
        "train", help="train an MLP on the bundled handwritten digits",
        description="Train an MLP on the bundled 8x8 digits (60% train, 20% validation, "
                    "20% test), print a table per epoch, then the test accuracy.")
    p.add_argument("--hidden", type=int, nargs="+", default=[30, 30], metavar="UNITS",
                   help="hidden layer widths (default: 30 30, the lecture's network)")
    p.add_argument("--activation", type=activation_arg, nargs="+", default=["sigmoid"],
                   metavar="NAME[:PARAM]",
                   help="one for all hidden layers or one per layer: sigmoid, tanh, relu, "
                        "leaky_relu[:slope], elu[:alpha], maxout[:k], identity "
                        "(default: sigmoid)")
    p.add_argument("--epochs", type=int, default=30, help="passes over the data (default: 30)")
    p.add_argument("--batch-size", type=int, default=10, help="mini-batch rows (default: 10)")
    p.add_argument("--lr", type=float, default=0.5, help="learning rate (default: 0.5)")
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="L2 weight decay (default: 0)")
    p.add_argument("--patience", type=int, default=None,
                   help="stop after this many epochs without a better validation loss and "
                        "keep the best weights (default: train every epoch)")
    p.add_argument("--backend", choices=["numpy", "native"], default=None,
                   help="kernels to run on (default: native if built, else numpy)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="(default: float32)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the split, the weights and the shuffles (default: 0)")
    p.add_argument("--save", metavar="PATH", help="write the trained model to this .npz file")
    p.set_defaults(run=cmd_train)


def cmd_train(args):
    X, y = data.load_digits(args.dtype)
    train, val, test = data.train_val_test_split(X, y, val_size=0.2, test_size=0.2,
                                                 seed=args.seed)
    activation = args.activation[0] if len(args.activation) == 1 else args.activation
    backend = args.backend or default_backend()
    if backend != (args.backend or "native"):
        print("the native kernels are not built (all of them): running on numpy")
    net = MLP([X.shape[1], *args.hidden, 10], activation=activation, output="softmax",
              backend=backend, dtype=args.dtype, seed=args.seed)
    print(f"{net}\ndigits: {len(train[0])} train, {len(val[0])} validation, "
          f"{len(test[0])} test rows")
    hist = net.fit(*train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                   weight_decay=args.weight_decay, validation_data=val,
                   patience=args.patience,
                   progress=lambda h: print(format_epoch(h, len(h.loss) - 1), flush=True))
    if hist.stopped_epoch is not None:
        print(f"early stop after epoch {hist.stopped_epoch + 1}; "
              f"kept epoch {hist.best_epoch + 1}")
    print(f"test accuracy: {net.score(*test):.4f}")
    if args.save:
        net.save(args.save)
        print(f"saved to {args.save}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="fastmlp", description="Multilayer perceptrons "
                                     "trained fast on the CPU.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    add_train_parser(commands)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, NotImplementedError, RuntimeError) as exc:   # bad option values
        print(f"fastmlp {args.command}: error: {exc}", file=sys.stderr)
        return 2
