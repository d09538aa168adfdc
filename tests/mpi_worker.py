"""What each MPI rank runs for tests/test_mpi.py: `mpirun -n 2 python mpi_worker.py CASE OUT`.

CASE is a JSON object: "mode" picks the scenario, the rest configures it; OUT is a directory
for the results (rank r writes rank{r}.npz).
"""
import json
import os
import sys

import numpy as np
from mpi4py import MPI

import fastmlp
from fastmlp import distributed

ARCHITECTURES = {
    # two relu layers, softmax + cross-entropy on labels, weight decay
    "relu_softmax": dict(sizes=[12, 16, 10, 4], activation="relu", output="softmax"),
    # maxout then tanh, sigmoid + binary cross-entropy on a multi-label 0/1 matrix
    "maxout_sigmoid": dict(sizes=[12, 9, 7, 3], activation=[("maxout", 3), "tanh"],
                           output="sigmoid"),
    # dropout: each shard applies its rows of the whole batch's masks
    "dropout_relu": dict(sizes=[12, 16, 10, 4], activation="relu", output="softmax",
                         dropout=[0.3, 0.5]),
    # batch norm: the statistics of the global batch, summed over the ranks' shards
    "batch_norm_sigmoid": dict(sizes=[12, 16, 10, 4], activation="sigmoid", output="softmax",
                               batch_norm=True),
}
# 91 rows in batches of 15: the last batch has 1 row, so one rank's shard is empty
N_ROWS, BATCH = 91, 15
# batch norm needs a row per rank in every batch: a last batch of 2 rows
ROWS = {"batch_norm_sigmoid": 92}
FIT = dict(epochs=4, batch_size=BATCH, lr=0.2, weight_decay=1e-3, patience=3)


def make_data(arch, seed=0):
    """Training and validation data for an architecture (the same on every rank)."""
    rng = np.random.default_rng(seed)
    spec = ARCHITECTURES[arch]
    k = spec["sizes"][-1]
    n = ROWS.get(arch, N_ROWS)
    X = rng.standard_normal((n + 20, spec["sizes"][0]))
    Y = (rng.integers(0, k, len(X)) if spec["output"] == "softmax"
         else (rng.random((len(X), k)) < 0.4).astype(np.float64))
    return (X[:n], Y[:n]), (X[n:], Y[n:])


def make_net(arch, backend):
    return fastmlp.MLP(**ARCHITECTURES[arch], backend=backend, dtype="float64", seed=5)


# optimizers for the parity case beyond FIT's plain SGD (their own lr and weight decay)
OPTIMIZERS = {
    "nesterov": lambda: fastmlp.optim.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda: fastmlp.optim.Adam(0.01, weight_decay=1e-3,
                                       schedule=fastmlp.optim.Cosine(T_max=4)),
    "adamw": lambda: fastmlp.optim.AdamW(0.01, schedule=fastmlp.optim.Plateau(tol=0.1)),
}


def train(arch, backend, comm=None, train_data=None, optimizer=None):
    """(net, History) of the reference training run, over `comm` when given; `optimizer`
    names one of OPTIMIZERS (None: FIT's plain SGD)."""
    (X, Y), val = make_data(arch)
    if train_data is not None:
        X, Y = train_data
    net = make_net(arch, backend)
    fit = dict(FIT)
    if optimizer is not None:
        del fit["lr"], fit["weight_decay"]
        fit["optimizer"] = OPTIMIZERS[optimizer]()
    return net, net.fit(X, Y, validation_data=val, comm=comm, **fit)


def save_result(out, comm, net, hist):
    arrays = {f"p{i}": p for i, p in enumerate(net.weights + net.biases + net.gammas +
                                                net.betas + net.running_means + net.running_vars)}
    arrays.update({f"s{i}": s for i, s in enumerate(net.optimizer.state_arrays())})
    arrays.update(lr=hist.lr, loss=hist.loss, val_loss=hist.val_loss, accuracy=hist.accuracy,
                  val_accuracy=hist.val_accuracy)
    np.savez(os.path.join(out, f"rank{comm.Get_rank()}.npz"), **arrays)


def main():
    case, out = json.loads(sys.argv[1]), sys.argv[2]
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    mode = case["mode"]
    if mode == "parity":
        net, hist = train(case["arch"], case["backend"], comm, optimizer=case.get("optimizer"))
        save_result(out, comm, net, hist)
    elif mode == "bad_data":   # rank 1 holds a NaN
        (X, Y), _ = make_data("relu_softmax")
        if rank == 1:
            X = X.copy()
            X[3, 2] = np.nan
        train("relu_softmax", case["backend"], comm, train_data=(X, Y))
    elif mode == "different_data":   # rank 1 holds other (valid) rows
        (X, Y), _ = make_data("relu_softmax", seed=rank)
        train("relu_softmax", case["backend"], comm, train_data=(X, Y))
    elif mode in ("raises_in_step", "dies_in_step"):   # rank 1 fails at its third step
        calls = []
        trainer = fastmlp.get_backend(case["backend"]).training
        local_gradients = trainer.gradients

        def failing(*args):
            calls.append(None)
            if rank == 1 and len(calls) == 3:
                if mode == "dies_in_step":
                    os._exit(3)
                raise RuntimeError("planted failure in a training step")
            return local_gradients(*args)

        trainer.gradients = failing
        train("relu_softmax", case["backend"], comm)
    elif mode == "print_and_save":
        net, hist = train("relu_softmax", case["backend"], comm)
        hist = net.fit(*make_data("relu_softmax")[0], epochs=2, batch_size=BATCH, comm=comm,
                       progress=lambda h: print(f"progress from rank {rank}", flush=True))
        net.save(os.path.join(out, f"model_rank{rank}.npz"), comm=comm)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    print(f"rank {rank} done", flush=True)


if __name__ == "__main__":
    main()
