#!/usr/bin/python3
"""Writes a tiny MNIST-shaped data set for CLI tests: OUT/idx (the four IDX files) and
OUT/npy (the SageMaker .npy layout). Labels follow a bright stripe, so a model can learn them."""
import pathlib
import struct
import sys

import numpy as np


def make(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = (rng.random((n, 28, 28)) * 60).astype(np.uint8)
    for i, label in enumerate(labels):
        images[i, 2 + 2 * label : 4 + 2 * label, :] = 255
    return images, labels


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.tobytes())


out = pathlib.Path(sys.argv[1])
(out / "idx").mkdir(parents=True, exist_ok=True)
(out / "npy").mkdir(parents=True, exist_ok=True)
for split, idx_prefix, npy_prefix, n, seed in [("train", "train", "train", 300, 1),
                                               ("test", "t10k", "eval", 100, 2)]:
    images, labels = make(n, seed)
    write_idx(out / "idx" / f"{idx_prefix}-images-idx3-ubyte", images)
    write_idx(out / "idx" / f"{idx_prefix}-labels-idx1-ubyte", labels)
    np.save(out / "npy" / f"{npy_prefix}_data.npy", (images.reshape(n, 784) / 255.0).astype(np.float32))
    np.save(out / "npy" / f"{npy_prefix}_labels.npy", labels.astype(np.int32))
