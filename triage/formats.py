"""The files of the data sets on disk: the layouts each is accepted in, and their decoders.

One reason to change: a file format (a new layout of a data set's files, or a decoder that
changes its output: bump DECODER_VERSION then, so stale decoded-array caches are ignored).
What the data sets are, where the data root is, the decoded-array cache and the subsets
are :mod:`triage.data`, the only module that uses this one.

Example:
    >>> kind, files = locate("cifar10", Path("shared/data"), "train")    # ('npz', [.../train.npz])
    >>> x, y = DECODERS[kind](files)                                   # uint8 (N, C, H, W), int64 (N,)
"""
from __future__ import annotations

import gzip
import math
import pickle
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

__all__ = ["DECODER_VERSION", "LAYOUTS", "DECODERS", "locate"]

# Bump when a decoder changes its output, so stale on-disk caches are ignored.
DECODER_VERSION = 2

# ----------------------------------------------------------------------------- layouts
# A layout is (kind, relative base folder, split -> list of files relative to base).
# Official downloads come first: they are the real thing, and the official CIFAR
# pickles need no decoding.
def _cifar_batches(split):
    return [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]


LAYOUTS = {
    "mnist": [("idx", "MNIST/raw", lambda s: [f"{'train' if s == 'train' else 't10k'}-{k}-ubyte[.gz]"
                                              for k in ("images-idx3", "labels-idx1")])],
    "cifar10": [("pickle", "cifar-10-batches-py", _cifar_batches),
                ("npz", "cifar-10", lambda s: [f"{s}.npz"])],
    "cifar100": [("pickle", "cifar-100-python", lambda s: [s]),
                 ("npz", "cifar-100", lambda s: [f"{s}.npz"])],
    # The official Stanford Dogs tarballs extract to Images/, Annotation/ and lists/ (the
    # lists tarball to *.mat directly, so lists/ is the folder a user makes for it); they are
    # accepted at the root itself or under stanford-dogs/.
    "stanford_dogs": [("jpeg", ".", lambda s: [f"lists/{s}_list.mat", "Images/"]),
                      ("jpeg", "stanford-dogs", lambda s: [f"lists/{s}_list.mat", "Images/"]),
                      ("crops", "stanford-dogs", lambda s: [f"{s}.txt", f"{s}/"])],
}


def _find(base: Path, pattern: str) -> Path | None:
    """The file a layout pattern names ('x[.gz]' accepts x or x.gz; 'd/' a folder), or None."""
    if pattern.endswith("/"):
        p = base / pattern[:-1]
        return p if p.is_dir() else None
    if pattern.endswith("[.gz]"):
        p = base / pattern[:-5]
        for q in (p, p.with_name(p.name + ".gz")):  # the extracted file is faster to read
            if q.is_file():
                return q
        return None
    p = base / pattern
    return p if p.is_file() else None


def locate(name: str, root: Path, split: str):
    """(kind, files) of the first complete layout of `name`/`split` under root, or None."""
    for kind, rel, files in LAYOUTS[name]:
        found = [_find(root / rel, f) for f in files(split)]
        if all(found):
            return kind, found
    return None

# ----------------------------------------------------------------------------- decoders
# Each returns (x uint8 (N, C, H, W), y int64 (N,)) as numpy arrays.
def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] or data[1] or data[2] != 0x08:
        raise ValueError(f"{path.name} is not an unsigned-byte idx file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(dims):
        raise ValueError(f"{path.name}: {body.size} bytes of payload for dims {dims} (truncated?)")
    return body.reshape(dims)


def _decode_mnist(files):
    img, lab = _read_idx(files[0]), _read_idx(files[1])
    if img.ndim != 3 or img.shape[1:] != (28, 28) or lab.shape != img.shape[:1]:
        raise ValueError(f"unexpected MNIST shapes {img.shape} / {lab.shape}")
    # Zero-pad 28 -> 32 (2 px each side) so VGG16's five 2x2 pools end at 1x1, as for CIFAR.
    x = np.zeros((len(img), 1, 32, 32), np.uint8)
    x[:, 0, 2:30, 2:30] = img
    return x, lab.astype(np.int64)


def _decode_cifar_pickle(files):
    xs, ys = [], []
    for f in files:
        with open(f, "rb") as fh:
            d = pickle.load(fh, encoding="bytes")
        xs.append(np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32))  # rows are R, G, B planes
        ys.append(np.asarray(d[b"labels"] if b"labels" in d else d[b"fine_labels"], np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _decode_cifar_npz(files):
    with np.load(files[0], allow_pickle=False) as z:
        xr, y = z["xr"], z["y"]
    # Inverse of the shared/data code (MANIFEST section 2): two cumulative sums mod 256 undo the
    # 2-D finite difference of the planes (G, R-G, B-G); written straight into NCHW.
    p = np.cumsum(np.cumsum(xr, axis=2, dtype=np.uint8), axis=3, dtype=np.uint8)
    x = np.empty((xr.shape[1], 3, 32, 32), np.uint8)
    x[:, 1] = p[0]
    np.add(p[1], p[0], out=x[:, 0])
    np.add(p[2], p[0], out=x[:, 2])
    return x, y.astype(np.int64)


def _decode_dogs_crops(files):
    """The shared 64x64 box crops (MANIFEST section 4): JPEG files in ImageFolder layout.

    ``files`` is (``{split}.txt``, ``{split}/``): the list gives the official order, one
    ``<wnid>-<breed>/<id>.jpg`` a line; the label is the index of the folder among the
    sorted folders (sorted wnids: the official label minus 1). Pillow decodes each file;
    these are exactly the pixels verify.py checks.
    """
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError("reading the Stanford Dogs JPEG crops needs pillow: pip install pillow") from e
    listing, folder = files
    names = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
    classes = {c: i for i, c in enumerate(sorted({n.split("/")[0] for n in names}))}
    if len(classes) != 120:
        raise ValueError(f"{listing.name} names {len(classes)} breed folders, expected 120")
    x = np.empty((len(names), 3, 64, 64), np.uint8)
    for i, rel in enumerate(names):
        with Image.open(folder / rel) as im:
            a = np.asarray(im.convert("RGB"))
        if a.shape != (64, 64, 3):
            raise ValueError(f"{rel} is {a.shape[1]}x{a.shape[0]}, expected 64x64")
        x[i] = a.transpose(2, 0, 1)
    y = np.array([classes[n.split("/")[0]] for n in names], np.int64)
    return x, y


def _decode_dogs_jpeg(files):
    """Official download -> 64x64 crops like the shared JPEG crops (minus their contrast stretch).

    Each photo is decoded with Pillow, cropped to the first <object> box of its
    Annotation file when that file exists (else kept whole), and resized to 64x64
    (bilinear, antialiased, aspect ratio not kept), so both sources give the same shape.
    """
    try:                           # optional dependencies: only this layout needs them
        from PIL import Image
        from scipy.io import loadmat
    except ImportError as e:
        raise ImportError("reading the official Stanford Dogs layout needs pillow and scipy: "
                          "pip install pillow scipy") from e

    lists, images = files
    base = images.parent
    m = loadmat(lists)
    names = [str(np.ravel(f)[0]) for f in np.ravel(m["file_list"])]
    y = np.asarray(m["labels"]).ravel().astype(np.int64) - 1    # official labels are 1-based
    x = np.empty((len(names), 3, 64, 64), np.uint8)
    for i, rel in enumerate(names):
        with Image.open(images / rel) as im:
            im = im.convert("RGB")
            ann = base / "Annotation" / rel.removesuffix(".jpg")
            if ann.is_file():
                box = ET.parse(ann).find("object/bndbox")
                x0, y0, x1, y1 = (int(float(box.find(k).text)) for k in ("xmin", "ymin", "xmax", "ymax"))
                im = im.crop((max(x0, 0), max(y0, 0), min(x1, im.width), min(y1, im.height)))
            x[i] = np.asarray(im.resize((64, 64), Image.BILINEAR)).transpose(2, 0, 1)
    return x, y


DECODERS = {"idx": _decode_mnist, "pickle": _decode_cifar_pickle, "npz": _decode_cifar_npz,
             "crops": _decode_dogs_crops, "jpeg": _decode_dogs_jpeg}
