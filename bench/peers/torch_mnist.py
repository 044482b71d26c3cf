#!/usr/bin/python3
"""PyTorch peer of strand's MNIST models, for throughput and accuracy comparisons.

Prints one JSON object on stdout; progress goes to stderr. On the CPU, run it with Debian's
/usr/bin/python3 (python3-torch 1.13). With --device cuda, run it with an interpreter whose
torch has CUDA (bench/gpu/check uses `python3 bench/peers/torch_mnist.py`): the data set is
copied to the GPU once and batches are gathered there.

Time to accuracy: --eval-every N evaluates on the 10,000 test images every N steps (and at the
end of every epoch, like `strand train --eval-every`); --stop-at-accuracy X stops at the first
evaluation reaching X and reports "seconds_to_accuracy" (null when it was not reached).
--lr-schedule constant|linear|cosine sets Adam's learning rate before every step as strand does:
lr * (1 - t) or lr * 0.5 * (1 + cos(pi t)), t = step / total steps (0-based step). strand's
time-to-99% recipe: --epochs 1 --batch-size 64 --lr 0.002 --lr-schedule cosine
--stop-at-accuracy 0.99 (evaluated at the end of the epoch).

Inference: --infer times --steps forward passes (model.eval(), torch.no_grad()) of --batch-size
test images, taken in order and cycling, after --warmup untimed ones; it reports images_per_sec
and latency_ms (mean per batch). The model keeps its initial weights: the time does not depend
on them.
"""
import math
import argparse
import json
import os
import sys
import time
from pathlib import Path

# numpy and torch are imported in main(), after --threads is known: Debian's
# torch uses OpenBLAS, which sizes its thread pool from OPENBLAS_NUM_THREADS when
# it is loaded and does not follow torch.set_num_threads.
np = torch = nn = None

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NPY_FILES = {
    "train": ("train_data.npy", "train_labels.npy"),
    "test": ("eval_data.npy", "eval_labels.npy"),
}


def log(msg):
    print(f"torch_mnist: {msg}", file=sys.stderr, flush=True)


def default_data_dir():
    cache = os.environ.get("STRAND_CACHE") or os.path.join(Path.home(), ".cache", "strand")
    return Path(cache) / "mnist"


def read_idx(path, magic):
    """Reads an IDX file into a uint8 array."""
    raw = path.read_bytes()
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        sys.exit(f"torch_mnist: {path}: IDX magic {found}, expected {magic}")
    ndim = magic & 0xFF
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def synthetic_split(shape, n):
    """Uniform pixels and labels of the model's shape: throughput does not depend on them."""
    generator = torch.Generator().manual_seed(1)
    return (torch.rand((n, *shape), generator=generator),
            torch.randint(0, 10, (n,), generator=generator))


def load_split(data_dir, split, shape=(1, 28, 28)):
    """Returns (images [N,1,28,28] float32 in [0,1], labels [N] int64) tensors; with data_dir
    "synthetic", 10,000 random images of `shape`."""
    if str(data_dir) == "synthetic":
        return synthetic_split(shape, 10000)
    images_npy, labels_npy = (data_dir / name for name in NPY_FILES[split])
    if images_npy.exists() and labels_npy.exists():
        images = np.load(images_npy).astype(np.float32, copy=False)
        labels = np.load(labels_npy)
    else:
        images_idx, labels_idx = (data_dir / name for name in IDX_FILES[split])
        if not (images_idx.exists() and labels_idx.exists()):
            sys.exit(f"torch_mnist: no MNIST {split} set in {data_dir}: expected "
                     f"{' + '.join(IDX_FILES[split])} or {' + '.join(NPY_FILES[split])} "
                     "(scripts/setup fetches the IDX files)")
        images = read_idx(images_idx, 2051).astype(np.float32) / 255.0
        labels = read_idx(labels_idx, 2049)
    if images.shape[0] != labels.shape[0]:
        sys.exit(f"torch_mnist: {split} set in {data_dir}: {images.shape[0]} images "
                 f"but {labels.shape[0]} labels")
    return (torch.from_numpy(np.ascontiguousarray(images)).reshape(-1, 1, 28, 28),
            torch.from_numpy(labels.astype(np.int64)))


INPUT_SHAPES = {"mnist_cnn": (1, 28, 28), "mnist_mlp": (1, 28, 28), "mnist_bn": (1, 28, 28),
                "cifar_cnn": (3, 32, 32)}


def batchnorm(kind, n):
    # strand's (Keras's) momentum 0.9 is PyTorch's 0.1; both use epsilon 1e-3 here.
    return kind(n, eps=1e-3, momentum=0.1)


def build_model(name):
    """The same networks as strand's built-in model files (models/files/NAME.json)."""
    if name == "mnist_bn":
        return nn.Sequential(
            nn.Conv2d(1, 24, 3, padding=1, bias=False), batchnorm(nn.BatchNorm2d, 24), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(24, 48, 3, padding=1, bias=False), batchnorm(nn.BatchNorm2d, 48), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(7 * 7 * 48, 128), batchnorm(nn.BatchNorm1d, 128), nn.ReLU(),
            nn.Linear(128, 10))
    if name == "cifar_cnn":
        return nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1, bias=False), batchnorm(nn.BatchNorm2d, 32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False), batchnorm(nn.BatchNorm2d, 64), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1, bias=False), batchnorm(nn.BatchNorm2d, 64), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1, bias=False), batchnorm(nn.BatchNorm2d, 128), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
            nn.Linear(128, 10))
    if name == "mnist_cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(7 * 7 * 64, 1024), nn.ReLU(), nn.Dropout(0.4),
            nn.Linear(1024, 10))
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, 1024), nn.ReLU(), nn.Dropout(0.4),
        nn.Linear(1024, 10))


def batches(images, labels, batch_size, generator):
    """Endless shuffled batches; reshuffles at every epoch, keeps the partial last batch.
    The permutation comes from the CPU generator (same order on every device) and is gathered
    on the images' device."""
    n = images.shape[0]
    while True:
        order = torch.randperm(n, generator=generator).to(images.device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield images[idx], labels[idx]


def accuracy(model, images, labels):
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, images.shape[0], 1000):
            logits = model(images[start:start + 1000])
            correct += (logits.argmax(1) == labels[start:start + 1000]).sum().item()
    model.train()
    return correct / images.shape[0]


def scheduled_lr(schedule, base, step, total):
    """strand's learning rate at 0-based `step` of `total` (train/trainer.cpp scheduled_lr)."""
    t = min(1.0, step / total) if total > 0 else 0.0
    if schedule == "linear":
        return base * (1.0 - t)
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * t))
    return base


def test_batches(images, batch_size):
    """Endless batches of the test set in order, cycling; a batch that crosses the end takes
    its remainder from the start."""
    n = images.shape[0]
    start = 0
    while True:
        if start + batch_size <= n:
            yield images[start:start + batch_size]
        else:
            idx = torch.arange(start, start + batch_size, device=images.device) % n
            yield images[idx]
        start = (start + batch_size) % n


def synchronize(device):
    """Waits for queued GPU work, so that a timer read afterwards includes it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(INPUT_SHAPES), default="mnist_cnn")
    parser.add_argument("--data", type=Path, default=default_data_dir(),
                        help="directory with the MNIST IDX files or train_data.npy/"
                             "train_labels.npy (+ eval_data.npy/eval_labels.npy), or 'synthetic' "
                             "(random images of the model's shape, for throughput); "
                             "default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="intra-op, inter-op and OpenBLAS threads (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before --steps")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--steps", type=int, default=100,
                      help="timed training steps, or forward passes with --infer (default: 100)")
    mode.add_argument("--epochs", type=int,
                      help="train full epochs instead and report test accuracy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--lr-schedule", choices=["constant", "linear", "cosine"], default="constant",
                        help="learning rate over the run, set before every step as strand does: "
                             "constant, linear to 0 or half a cosine to 0 over --steps (or all "
                             "steps of --epochs); warm-up steps use --lr (default: %(default)s)")
    parser.add_argument("--infer", action="store_true",
                        help="time inference instead: --steps forward passes of test-set batches "
                             "after --warmup, model.eval() and torch.no_grad()")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: GPU 0, data set and batches on the GPU (default: %(default)s)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (torch 2.x); the warm-up steps compile it")
    parser.add_argument("--eval-every", type=int, metavar="STEPS",
                        help="evaluate on the test set every STEPS steps and at the end of every epoch")
    parser.add_argument("--stop-at-accuracy", type=float, metavar="X",
                        help="stop at the first evaluation with test accuracy >= X (0 < X <= 1); "
                             "evaluates at the end of every epoch unless --eval-every says more often")
    args = parser.parse_args()
    for name in ("batch_size", "threads", "steps", "eval_every"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0 or (args.epochs is not None and args.epochs < 1):
        parser.error("--warmup must be >= 0 and --epochs >= 1")
    if args.lr <= 0:
        parser.error("--lr must be positive")
    if args.stop_at_accuracy is not None and not 0 < args.stop_at_accuracy <= 1:
        parser.error("--stop-at-accuracy must be in (0, 1]")
    if args.infer and (args.epochs or args.eval_every or args.stop_at_accuracy):
        parser.error("--infer times forward passes only: it takes --steps, not --epochs, "
                     "--eval-every or --stop-at-accuracy")
    return args


def give_openblas_fast_kernels():
    """The peer at its best: OpenBLAS picks kernels from a CPU table and may fall back to slow
    generic ones on a CPU it does not know (or follow a weaker OPENBLAS_CORETYPE left in the
    environment). On an AVX-512 CPU its SkylakeX kernels are the fast ones."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " avx512f" in flags:
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
        os.environ.pop("OPENBLAS_L2_SIZE", None)


def infer(args, device, where):
    """Times args.steps forward passes of test-set batches; returns the result object."""
    test_images, _ = load_split(args.data, "test", INPUT_SHAPES[args.model])
    test_images = test_images.to(device)
    log(f"{args.model} inference, batches of {args.batch_size} from the {test_images.shape[0]} "
        f"test images in {args.data}, {where}, torch {torch.__version__}"
        f"{', compiled' if args.compile else ''}")
    model = build_model(args.model).to(device)
    model.eval()
    forward = torch.compile(model, dynamic=False) if args.compile else model
    stream = test_batches(test_images, args.batch_size)
    with torch.no_grad():
        warmup_start = time.perf_counter()
        for _ in range(args.warmup):
            forward(next(stream))
        synchronize(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            forward(next(stream))
        synchronize(device)
        seconds = time.perf_counter() - start
    return {
        "peer": "pytorch",
        "torch_version": torch.__version__,
        "model": args.model,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "device": args.device,
        "compiled": args.compile,
        "steps": args.steps,
        "images_per_sec": args.steps * args.batch_size / seconds,
        "latency_ms": 1000 * seconds / args.steps,
        "seconds": seconds,
        "warmup_seconds": start - warmup_start,
    }


def main():
    global np, torch, nn
    args = parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    give_openblas_fast_kernels()
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"torch_mnist: --device cuda: torch {torch.__version__} sees no CUDA GPU")
    if args.compile and not hasattr(torch, "compile"):
        sys.exit(f"torch_mnist: --compile needs torch 2.x (torch.compile); this is torch {torch.__version__}")
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest algorithms

    where = (torch.cuda.get_device_name(device) if device.type == "cuda" else
             f"{args.threads} threads (OpenBLAS {os.environ['OPENBLAS_NUM_THREADS']}, "
             f"{os.environ.get('OPENBLAS_CORETYPE', 'auto')})")
    if args.infer:
        print(json.dumps(infer(args, device, where)))
        return

    # Evaluations during training only when asked for; --epochs alone evaluates once at the end.
    evaluating = bool(args.eval_every or args.stop_at_accuracy)
    shape = INPUT_SHAPES[args.model]
    train_images, train_labels = (t.to(device) for t in load_split(args.data, "train", shape))
    test_set = (tuple(t.to(device) for t in load_split(args.data, "test", shape))
                if evaluating or args.epochs else None)
    log(f"{args.model}, {train_images.shape[0]} training images from {args.data}, "
        f"batch {args.batch_size}, {where}, torch {torch.__version__}"
        f"{', compiled' if args.compile else ''}")

    model = build_model(args.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    # dynamic=False: the partial last batch and the evaluation batches get their own static graphs.
    forward = torch.compile(model, dynamic=False) if args.compile else model

    def step(images, labels):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(forward(images), labels)
        loss.backward()
        optimizer.step()
        return loss  # a tensor: reading it would wait for the GPU at every step

    n = train_images.shape[0]
    stream = batches(train_images, train_labels, args.batch_size, generator)
    steps_per_epoch = -(-n // args.batch_size)
    steps = args.epochs * steps_per_epoch if args.epochs else args.steps
    warmup_start = time.perf_counter()
    if not args.epochs:
        for _ in range(args.warmup):
            step(*next(stream))
        # The partial last batch of an epoch has its own shape: compile it (and let cuDNN pick
        # its algorithms for it) before the timer starts.
        if (args.compile or device.type == "cuda") and n % args.batch_size:
            step(train_images[:n % args.batch_size], train_labels[:n % args.batch_size])
    synchronize(device)
    warmup_seconds = time.perf_counter() - warmup_start

    images_seen = 0
    eval_seconds = 0.0
    evaluations = []
    seconds_to_accuracy = None
    start = time.perf_counter()
    for i in range(1, steps + 1):
        images, labels = next(stream)
        if args.lr_schedule != "constant":
            for group in optimizer.param_groups:
                group["lr"] = scheduled_lr(args.lr_schedule, args.lr, i - 1, steps)
        loss = step(images, labels)
        images_seen += images.shape[0]
        if args.epochs and (i % 100 == 0 or i == steps):
            log(f"epoch {(i - 1) // steps_per_epoch + 1} step {i}/{steps} loss {loss.item():.4f} "
                f"{images_seen / (time.perf_counter() - start - eval_seconds):.1f} images/s")
        if evaluating and ((args.eval_every and i % args.eval_every == 0) or i == steps
                           or (args.epochs and i % steps_per_epoch == 0)):
            synchronize(device)
            eval_start = time.perf_counter()
            test_accuracy = accuracy(forward, *test_set)
            now = time.perf_counter()
            eval_seconds += now - eval_start
            evaluations.append({"epoch": (i - 1) // steps_per_epoch + 1, "step": i,
                                "test_accuracy": test_accuracy, "seconds": now - start})
            log(f"step {i}: test accuracy {100 * test_accuracy:.2f}% after {now - start:.1f} s")
            if args.stop_at_accuracy and test_accuracy >= args.stop_at_accuracy:
                seconds_to_accuracy = now - start
                break
    synchronize(device)
    seconds = time.perf_counter() - start

    result = {
        "peer": "pytorch",
        "torch_version": torch.__version__,
        "model": args.model,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "steps": i,
        "images_per_sec": images_seen / (seconds - eval_seconds),
        "seconds": seconds,
        "device": args.device,
        "compiled": args.compile,
        "lr": args.lr,
        "lr_schedule": args.lr_schedule,
        "warmup_seconds": warmup_seconds,
    }
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
        result["cudnn_version"] = torch.backends.cudnn.version()
        result["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        result["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    if args.epochs:
        result["epochs"] = args.epochs
    if evaluating:  # the last step was evaluated
        result["test_accuracy"] = evaluations[-1]["test_accuracy"]
        result["evaluations"] = evaluations
    elif args.epochs:
        result["test_accuracy"] = accuracy(forward, *test_set)
    if args.stop_at_accuracy:
        result["stop_at_accuracy"] = args.stop_at_accuracy
        result["seconds_to_accuracy"] = seconds_to_accuracy
    print(json.dumps(result))


if __name__ == "__main__":
    main()
