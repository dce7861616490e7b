"""Data sets of Deep Net Triage and the on-device input pipeline.

The paper trains VGG16-BN on MNIST, CIFAR-10, CIFAR-100 and Stanford Dogs.
Each data set is read from whichever supported layout is under the data root
(the official downloads, or the compact lossless files of ``shared/data``,
see its MANIFEST.md), decoded once to uint8 ``(N, C, H, W)`` tensors and
cached on disk. Training batches are then cut, flipped, normalised and
resized on the device (airbench style), so no DataLoader workers are needed.

    >>> train, test, sp = get_loaders("cifar10", batch_size=256, train_per_class=500)
    >>> x, y = next(iter(train))       # float32 (256, 3, 32, 32), int64 (256,)
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import pickle
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DATASETS", "DataError", "DatasetSpec", "spec", "resolve_root", "load_split",
    "channel_stats", "stratified_subset", "validation_split", "DeviceLoader", "get_loaders",
    "get_split_loaders", "download",
]

DATASETS = ("mnist", "cifar10", "cifar100", "stanford_dogs")
SPLITS = ("train", "test")

# Bump when a decoder changes its output, so stale on-disk caches are ignored.
_CACHE_VERSION = 2
_DOGS_URL = "http://vision.stanford.edu/aditya86/ImageNetDogs/"
_DOGS_NOTE = ("Stanford Dogs images are 64x64 crops of the dog bounding boxes (third-party "
              "crops, contrast-stretched, JPEG q75; shared/data MANIFEST section 4), not the "
              "paper's full photos upsampled to 224.")
_DOGS_OFFICIAL_NOTE = ("Stanford Dogs images are the official photos cropped to their first "
                       "bounding box and resized to 64x64 (the paper used the full photos).")


class DataError(Exception):
    """A data set is missing, incomplete or unreadable; the message says how to fix it."""


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of a data set, as load_split returns it."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int           # side of the tensors load_split returns (MNIST 28 is padded to 32)
    classes: tuple[str, ...]  # class k has name classes[k]
    note: str = ""            # caveat about how the images differ from the paper's


# Official class names (CIFAR batches.meta / meta; Stanford Dogs breeds in sorted-wnid order,
# which is the official label order). Hard-coded so that spec() needs no data files;
# tests check them against the data.
_CIFAR10 = "airplane automobile bird cat deer dog frog horse ship truck"
_CIFAR100 = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
    "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo "
    "keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse "
    "mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy "
    "porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper "
    "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television "
    "tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm")
_DOGS = (
    "Chihuahua Japanese_spaniel Maltese_dog Pekinese Shih-Tzu Blenheim_spaniel papillon "
    "toy_terrier Rhodesian_ridgeback Afghan_hound basset beagle bloodhound bluetick "
    "black-and-tan_coonhound Walker_hound English_foxhound redbone borzoi Irish_wolfhound "
    "Italian_greyhound whippet Ibizan_hound Norwegian_elkhound otterhound Saluki "
    "Scottish_deerhound Weimaraner Staffordshire_bullterrier American_Staffordshire_terrier "
    "Bedlington_terrier Border_terrier Kerry_blue_terrier Irish_terrier Norfolk_terrier "
    "Norwich_terrier Yorkshire_terrier wire-haired_fox_terrier Lakeland_terrier Sealyham_terrier "
    "Airedale cairn Australian_terrier Dandie_Dinmont Boston_bull miniature_schnauzer "
    "giant_schnauzer standard_schnauzer Scotch_terrier Tibetan_terrier silky_terrier "
    "soft-coated_wheaten_terrier West_Highland_white_terrier Lhasa flat-coated_retriever "
    "curly-coated_retriever golden_retriever Labrador_retriever Chesapeake_Bay_retriever "
    "German_short-haired_pointer vizsla English_setter Irish_setter Gordon_setter "
    "Brittany_spaniel clumber English_springer Welsh_springer_spaniel cocker_spaniel "
    "Sussex_spaniel Irish_water_spaniel kuvasz schipperke groenendael malinois briard kelpie "
    "komondor Old_English_sheepdog Shetland_sheepdog collie Border_collie Bouvier_des_Flandres "
    "Rottweiler German_shepherd Doberman miniature_pinscher Greater_Swiss_Mountain_dog "
    "Bernese_mountain_dog Appenzeller EntleBucher boxer bull_mastiff Tibetan_mastiff "
    "French_bulldog Great_Dane Saint_Bernard Eskimo_dog malamute Siberian_husky affenpinscher "
    "basenji pug Leonberg Newfoundland Great_Pyrenees Samoyed Pomeranian chow keeshond "
    "Brabancon_griffon Pembroke Cardigan toy_poodle miniature_poodle standard_poodle "
    "Mexican_hairless dingo dhole African_hunting_dog")

_SPECS = {
    "mnist": DatasetSpec("mnist", 10, 1, 32, tuple(str(d) for d in range(10))),
    "cifar10": DatasetSpec("cifar10", 10, 3, 32, tuple(_CIFAR10.split())),
    "cifar100": DatasetSpec("cifar100", 100, 3, 32, tuple(_CIFAR100.split())),
    "stanford_dogs": DatasetSpec("stanford_dogs", 120, 3, 64, tuple(_DOGS.split()), _DOGS_NOTE),
}


def spec(name: str) -> DatasetSpec:
    """Describe a data set without touching any data file.

    Args:
        name: one of DATASETS.

    Example:
        >>> spec("cifar100").num_classes
        100
    """
    try:
        return _SPECS[name]
    except (KeyError, TypeError):
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}") from None


# ----------------------------------------------------------------------------- layouts
# A layout is (kind, relative base folder, split -> list of files relative to base).
# Official downloads come first: they are the real thing, and the official CIFAR
# pickles need no decoding.
def _cifar_batches(split):
    return [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]


_LAYOUTS = {
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

_HOWTO = {
    "mnist": "get it with `python -m triage download mnist --data-root DIR` (torchvision, needs internet)",
    "cifar10": "get it with `python -m triage download cifar10 --data-root DIR` (torchvision, needs internet)",
    "cifar100": "get it with `python -m triage download cifar100 --data-root DIR` (torchvision, needs internet)",
    "stanford_dogs": (f"download images.tar, annotation.tar and lists.tar from {_DOGS_URL} and extract "
                      "them into the data root so that it holds Images/<wnid>-<breed>/*.jpg, "
                      "Annotation/<wnid>-<breed>/*, lists/{train,test}_list.mat"),
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


def _locate(name: str, root: Path, split: str):
    """(kind, files) of the first complete layout of `name`/`split` under root, or None."""
    for kind, rel, files in _LAYOUTS[name]:
        found = [_find(root / rel, f) for f in files(split)]
        if all(found):
            return kind, found
    return None


def _expected(name: str, roots) -> str:
    lines = []
    for root in roots:
        gone = "" if Path(root).is_dir() else "  (this root does not exist)"
        for _, rel, files in _LAYOUTS[name]:
            pats = dict.fromkeys(files("train") + files("test"))
            lines.append(f"  {Path(root) / rel}/  {', '.join(pats)}{gone}")
            gone = ""
    return "\n".join(lines)


def _missing(name: str, roots, what: str = "") -> DataError:
    roots = [str(r) for r in roots]
    return DataError(
        f"{spec(name).name}: no {what + ' ' if what else ''}data found under "
        f"{' or '.join(roots) if roots else '(no root)'}.\n"
        f"Expected one of these sets of files:\n{_expected(name, roots)}\n"
        f"To fix: {_HOWTO[name]}; or pass --data-root / set $TRIAGE_DATA.")


def _default_roots() -> list[Path]:
    repo = Path(__file__).resolve().parents[1]
    cands = [Path.cwd() / "data", repo / "data", Path.cwd().parent / "shared" / "data",
             repo.parent / "shared" / "data"]
    return list(dict.fromkeys(p.resolve() for p in cands))


def resolve_root(root=None, dataset: str | None = None) -> Path:
    """Find the data root.

    An explicit `root` wins, then ``$TRIAGE_DATA``; each is used alone. Otherwise the
    first of ``./data``, ``<repo>/data``, ``../shared/data``, ``<repo>/../shared/data``
    that holds `dataset` (any supported layout, either split) is used.

    Args:
        root: explicit data root, or None.
        dataset: name from DATASETS whose files must be present; None accepts any.

    Raises:
        DataError: naming every root tried and the files expected there.

    Example:
        >>> resolve_root(dataset="mnist")
        PosixPath('/.../shared/data')
    """
    names = DATASETS if dataset is None else (spec(dataset).name,)
    explicit = root if root is not None else os.environ.get("TRIAGE_DATA") or None
    roots = [Path(explicit).expanduser().resolve()] if explicit is not None else _default_roots()
    for r in roots:
        if any(_locate(n, r, s) for n in names for s in SPLITS):
            return r
    if explicit is not None and dataset is None:
        return roots[0]  # an explicit root need not hold anything yet (e.g. for download)
    if dataset is None:
        raise DataError(f"no data set found under any of {', '.join(map(str, roots))}; "
                        f"get one with `python -m triage download NAME --data-root DIR`")
    raise _missing(dataset, roots)


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


_DECODERS = {"idx": _decode_mnist, "pickle": _decode_cifar_pickle, "npz": _decode_cifar_npz,
             "crops": _decode_dogs_crops, "jpeg": _decode_dogs_jpeg}

# ----------------------------------------------------------------------------- caching
_MEMO: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}   # cache key -> (x, y), this process
_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {}


def _cache_dir() -> Path:
    return Path(os.environ.get("TRIAGE_CACHE") or Path.home() / ".cache" / "triage").expanduser()


def _cache_key(name: str, split: str, kind: str, files) -> str:
    """Identify a decoded split by its source files' path, size and mtime (and the decoder version).

    For the official Stanford Dogs layout the folders Images/ and Annotation/ count by their
    own mtime (changes when entries are added or removed), not by every photo in them.
    """
    parts = [str(_CACHE_VERSION), name, split, kind]
    for f in list(files) + ([files[1].parent / "Annotation"] if kind == "jpeg" else []):
        st = f.stat() if f.exists() else None
        parts.append(f"{f.resolve()}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}")
    return f"{name}-{split}-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def _atomic_save(path: Path, write) -> None:
    """Write via a temp file in the same folder and os.replace, so readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_cached(key: str):
    d = _cache_dir()
    try:
        y = np.load(d / f"{key}.y.npy", allow_pickle=False)
        x = np.load(d / f"{key}.x.npy", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None   # absent or unreadable: decode again
    if x.dtype != np.uint8 or x.ndim != 4 or y.dtype != np.int64 or y.shape != x.shape[:1]:
        return None
    return x, y


def _save_cached(key: str, x: np.ndarray, y: np.ndarray) -> None:
    d = _cache_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        _atomic_save(d / f"{key}.y.npy", lambda f: np.save(f, y))
        _atomic_save(d / f"{key}.x.npy", lambda f: np.save(f, x))
    except OSError:
        pass   # a read-only or full cache only costs a re-decode next time


def _resolve(name: str, split: str, root):
    """(key, kind, files) of the split to load; DataError when it is absent."""
    spec(name)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    r = resolve_root(root, name)
    found = _locate(name, r, split)
    if found is None:
        raise _missing(name, [r], what=split)
    kind, files = found
    return _cache_key(name, split, kind, files), kind, files


def load_split(name: str, split: str, root=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split as uint8 images and int64 labels on the CPU.

    Decoded once: kept in memory for the process and on disk (.npy under
    ``$TRIAGE_CACHE`` or ``~/.cache/triage``, keyed by the source files' path, size
    and mtime). The data root is only read. The returned tensors are shared with the
    in-process cache: clone before editing them in place.

    Formats, whichever is under the root (official downloads first):
    ``MNIST/raw/*-ubyte[.gz]``; ``cifar-10-batches-py/`` or ``cifar-10/{split}.npz``;
    ``cifar-100-python/`` or ``cifar-100/{split}.npz`` (fine labels);
    ``Images/`` + ``lists/{split}_list.mat`` (+ ``Annotation/``) or
    ``stanford-dogs/{split}.txt`` + ``stanford-dogs/{split}/`` (JPEG crops). MNIST is zero-padded
    to 32x32. Stanford Dogs is 64x64 from both sources: the shared files are 64x64 bounding-box crops, and
    official photos are cropped to their first box and resized to 64x64.

    Args:
        name: one of DATASETS.
        split: 'train' or 'test'.
        root: data root; None searches as resolve_root does.

    Returns:
        x uint8 (N, C, H, W) contiguous, y int64 (N,).

    Raises:
        DataError: the files are missing or unreadable.

    Example:
        >>> x, y = load_split("mnist", "test")
        >>> x.shape, y.shape
        (torch.Size([10000, 1, 32, 32]), torch.Size([10000]))
    """
    key, kind, files = _resolve(name, split, root)
    if key in _MEMO:
        return _MEMO[key]
    arrays = _load_cached(key)
    if arrays is None:
        try:
            arrays = _DECODERS[kind](files)
        except ImportError:
            raise
        except Exception as e:  # any failure inside numpy/pickle/zip/PIL means a bad file
            raise DataError(
                f"{name}: could not read {split} data from {', '.join(map(str, files))} "
                f"({type(e).__name__}: {e}). The file is probably truncated or corrupt: delete it "
                f"and get it again; {_HOWTO[name]}.") from e
        _save_cached(key, *arrays)
    x, y = (torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
    _MEMO[key] = (x, y)
    return x, y


def channel_stats(name: str, root=None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (population) of the train split, in [0, 1] units.

    Computed exactly from 256-bin histograms of the uint8 pixels (as load_split returns
    them, so MNIST includes its zero border), then cached beside the decoded arrays.

    Args:
        name: one of DATASETS.
        root: data root; None searches as resolve_root does.

    Example:
        >>> channel_stats("cifar10")   # ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    """
    key, _, _ = _resolve(name, "train", root)
    if key in _STATS:
        return _STATS[key]
    path = _cache_dir() / f"{key}.stats.json"
    try:
        d = json.loads(path.read_text())
        stats = (tuple(d["mean"]), tuple(d["std"]))
    except (OSError, ValueError, KeyError, TypeError):
        x, _ = load_split(name, "train", root)
        v = np.arange(256, dtype=np.float64) / 255
        mean, std = [], []
        for c in range(x.shape[1]):
            h = torch.bincount(x[:, c].flatten(), minlength=256).double().numpy()
            h /= h.sum()
            mu = float(h @ v)
            mean.append(mu)
            std.append(float(np.sqrt(h @ (v - mu) ** 2)))
        stats = (tuple(mean), tuple(std))
        try:
            _cache_dir().mkdir(parents=True, exist_ok=True)
            _atomic_save(path, lambda f: f.write(json.dumps({"mean": mean, "std": std}).encode()))
        except OSError:
            pass
    _STATS[key] = stats
    return stats


# ----------------------------------------------------------------------------- subsets and loaders
def stratified_subset(y: torch.Tensor, per_class: int | None, seed: int) -> torch.Tensor:
    """Indices (sorted) of `per_class` random examples of every class.

    A class with fewer examples contributes all of them. Deterministic in `seed`.

    Args:
        y: int64 labels (N,).
        per_class: examples per class, or None for all indices.
        seed: seed of the torch.Generator that draws them.

    Example:
        >>> idx = stratified_subset(torch.tensor([0, 0, 1, 1, 1]), 1, seed=0)   # e.g. tensor([1, 3])
    """
    y = torch.as_tensor(y).cpu().long()
    if per_class is None:
        return torch.arange(len(y))
    if per_class < 0:
        raise ValueError(f"per_class must be >= 0, got {per_class}")
    g = torch.Generator().manual_seed(seed)
    # Random order, then a stable sort by class: each class's examples in random order, so
    # the first `per_class` of each class are a uniform draw. No per-class Python loop.
    order = torch.randperm(len(y), generator=g)
    order = order[torch.argsort(y[order], stable=True)]
    counts = torch.bincount(y)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(y)) - starts[y[order]]
    return torch.sort(order[rank < per_class]).values


def validation_split(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Hold out ``fraction`` of every class as validation: (train indices, val indices), sorted.

    Stratified and fixed by ``seed`` (each class keeps ``round(fraction * n_c)`` images for
    validation, at least one), so a data set and seed always get the same split, whatever
    network trains on it. The generator is offset from the one of :func:`stratified_subset`
    so that the two draws are independent.

    Args:
        y: int64 labels (N,) of the training images.
        fraction: share held out, in (0, 0.5].
        seed: the run's seed.

    Example:
        >>> tr, va = validation_split(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), 0.25, seed=0)
        >>> len(tr), len(va)
        (6, 2)
    """
    if not 0 < fraction <= 0.5:
        raise ValueError(f"validation fraction must be in (0, 0.5], got {fraction}")
    y = torch.as_tensor(y).cpu().long()
    g = torch.Generator().manual_seed(10_007 + seed)
    order = torch.randperm(len(y), generator=g)
    order = order[torch.argsort(y[order], stable=True)]
    counts = torch.bincount(y)
    starts = torch.cumsum(counts, 0) - counts
    n_val = torch.clamp(torch.round(counts.double() * fraction).long(), min=1)
    n_val = torch.where(counts > 1, n_val, torch.zeros_like(n_val))    # a singleton class stays in train
    rank = torch.arange(len(y)) - starts[y[order]]
    is_val = rank < n_val[y[order]]
    return torch.sort(order[~is_val]).values, torch.sort(order[is_val]).values


class DeviceLoader:
    """Batches device-resident uint8 images; augmentation and normalisation run per batch on the device.

    The images are moved to `device` once. Each batch is cut by index, optionally
    flipped (train only), converted to float32 and normalised as ``(x/255 - mean)/std``,
    and optionally resized with bilinear interpolation (the paper feeds 224x224 inputs).
    A train loader reshuffles every epoch with a generator seeded by ``seed + epoch``, so
    a resumed run reproduces the order; the epoch advances by one per iteration, or is
    set with set_epoch.

    Args:
        x: uint8 images (N, C, H, W).
        y: int64 labels (N,).
        batch_size: images per batch.
        mean, std: per-channel statistics in [0, 1] units (channel_stats).
        train: shuffle every epoch and (with `flip`) flip each image with probability 1/2.
        device: where the data and batches live.
        flip: random horizontal flips when training.
        resolution: side of the returned images; None keeps the stored size.
        seed: base seed of the shuffle and flips.
        channels_last: return batches in channels_last memory format.
        drop_last: drop the last incomplete batch.

    Example:
        >>> x, y = load_split("cifar10", "train")
        >>> loader = DeviceLoader(x, y, batch_size=512, mean=m, std=s, train=True, device="cuda")
        >>> for xb, yb in loader: ...
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, mean, std, train: bool,
                 device="cpu", flip: bool = True, resolution: int | None = None, seed: int = 0,
                 channels_last: bool = False, drop_last: bool = False):
        if x.dtype != torch.uint8 or x.ndim != 4 or len(x) != len(y):
            raise ValueError(f"x must be uint8 (N, C, H, W) with len(y) rows; got {x.dtype} {tuple(x.shape)}"
                             f" and {len(y)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.x = x.to(self.device)
        self.y = y.to(self.device, torch.int64)
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if mean.shape[1] != x.shape[1] or std.shape[1] != x.shape[1]:
            raise ValueError(f"mean/std need {x.shape[1]} channels, got {mean.shape[1]}/{std.shape[1]}")
        self.mean, self.std = tuple(mean.flatten().tolist()), tuple(std.flatten().tolist())
        # (x/255 - mean)/std as one fused multiply-add per element
        self._scale = (1 / (255 * std)).to(self.device)
        self._shift = (-mean / std).to(self.device)
        self.batch_size, self.train, self.flip = batch_size, train, flip
        self.resolution, self.seed = resolution, seed
        self.channels_last, self.drop_last = channels_last, drop_last
        self.epoch = 0

    @property
    def dataset_size(self) -> int:
        """Number of images."""
        return len(self.y)

    def __len__(self) -> int:
        n, b = self.dataset_size, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use the shuffle and flips of `epoch`."""
        self.epoch = epoch

    def _draws(self):
        """(order, flips) of this epoch's pass (None for an eval loader), then advance the epoch.

        A CPU generator seeded with ``seed + epoch`` gives the same order on every device;
        :class:`triage.train.CachedFeatures` replays these draws over cached features.
        """
        order = flips = None
        if self.train:
            n, dev = self.dataset_size, self.device
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=g).to(dev)
            if self.flip:
                flips = (torch.rand(n, generator=g) < 0.5).to(dev)
        self.epoch += 1
        return order, flips

    def _prepare(self, xb: torch.Tensor) -> torch.Tensor:
        """uint8 batch -> normalised float (resized, channels_last as configured)."""
        xb = torch.addcmul(self._shift, xb.float(), self._scale)
        if self.resolution is not None and self.resolution != self.x.shape[-1]:
            xb = F.interpolate(xb, size=(self.resolution, self.resolution), mode="bilinear",
                               align_corners=False)
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb

    def fixed_batches(self, flipped: bool = False, batch_size: int | None = None):
        """Every image in index order, all mirrored or none, normalised (no shuffle, no labels)."""
        b = batch_size or self.batch_size
        for i in range(0, self.dataset_size, b):
            xb = self.x[i:i + b]
            yield self._prepare(xb.flip(3) if flipped else xb)

    def __iter__(self):
        n, b = self.dataset_size, self.batch_size
        order, flips = self._draws()
        for i in range(len(self)):
            sl = slice(i * b, min(i * b + b, n))
            if order is None:
                xb, yb = self.x[sl], self.y[sl]
            else:
                idx = order[sl]
                xb, yb = self.x[idx], self.y[idx]
            if flips is not None:
                xb = torch.where(flips[sl].view(-1, 1, 1, 1), xb.flip(3), xb)
            yield self._prepare(xb), yb


def get_loaders(name: str, *, root=None, batch_size: int = 128, device="cpu",
                train_per_class: int | None = None, test_per_class: int | None = None, seed: int = 0,
                resolution: int | None = None, flip: bool = True,
                channels_last: bool = False) -> tuple[DeviceLoader, DeviceLoader, DatasetSpec]:
    """Train and test loaders of a data set, normalised with the full train split's statistics.

    Args:
        name: one of DATASETS.
        root: data root; None searches as resolve_root does.
        batch_size: images per batch (both loaders).
        device: where images live and batches are made.
        train_per_class, test_per_class: stratified subset sizes (None: everything).
        seed: seed of the subsets and of the train shuffle/flips.
        resolution: side of the images fed to the model (None: stored size; the paper uses 224).
        flip: random horizontal flips for the train loader.
        channels_last: batches in channels_last memory format.

    Returns:
        (train loader, test loader, spec); spec.note says how the images differ from the paper's.

    Example:
        >>> train, test, sp = get_loaders("mnist", train_per_class=100, test_per_class=50)
        >>> len(train.y), sp.num_classes
        (1000, 10)
    """
    sp = spec(name)
    if name == "stanford_dogs" and _resolve(name, "train", root)[1] == "jpeg":
        sp = replace(sp, note=_DOGS_OFFICIAL_NOTE)
    mean, std = channel_stats(name, root)
    common = dict(batch_size=batch_size, mean=mean, std=std, device=device, resolution=resolution,
                  seed=seed, channels_last=channels_last)
    loaders = []
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        x, y = load_split(name, split, root)
        if per_class is not None:
            idx = stratified_subset(y, per_class, seed)
            x, y = x[idx], y[idx]
        loaders.append(DeviceLoader(x, y, train=split == "train", flip=flip and split == "train", **common))
    return loaders[0], loaders[1], sp


def get_split_loaders(name: str, *, root=None, batch_size: int = 128, device="cpu",
                      train_per_class: int | None = None, test_per_class: int | None = None,
                      val_fraction: float = 0.0, seed: int = 0, resolution: int | None = None,
                      flip: bool = True, channels_last: bool = False):
    """Train, validation and test loaders: the protocol that selects on validation data.

    The training subset (``train_per_class``, or all) is split by :func:`validation_split`;
    the validation loader neither shuffles nor flips. ``val_fraction=0`` gives no
    validation loader (None), as :func:`get_loaders`.

    Returns:
        (train, val or None, test, spec).

    Example:
        >>> tr, va, te, sp = get_split_loaders("mnist", val_fraction=0.1)
        >>> tr.dataset_size, va.dataset_size, te.dataset_size
        (54000, 6000, 10000)
    """
    train, test, sp = get_loaders(name, root=root, batch_size=batch_size, device=device,
                                  train_per_class=train_per_class, test_per_class=test_per_class,
                                  seed=seed, resolution=resolution, flip=flip, channels_last=channels_last)
    if not val_fraction:
        return train, None, test, sp
    tr_idx, va_idx = validation_split(train.y.cpu(), val_fraction, seed)
    x, y = train.x, train.y
    common = dict(batch_size=batch_size, mean=train.mean, std=train.std, device=device,
                  resolution=resolution, seed=seed, channels_last=channels_last)
    tr_idx, va_idx = tr_idx.to(x.device), va_idx.to(x.device)
    train = DeviceLoader(x[tr_idx], y[tr_idx], train=True, flip=flip, **common)
    val = DeviceLoader(x[va_idx], y[va_idx], train=False, flip=False, **common)
    return train, val, test, sp


def download(name: str, root) -> Path:
    """Download a data set's official files with torchvision (needs internet).

    Both splits of MNIST, CIFAR-10 and CIFAR-100 are fetched into torchvision's layout
    (``MNIST/raw``, ``cifar-10-batches-py``, ``cifar-100-python``), which load_split reads.
    Files already present with the right md5 are reused, so nothing is fetched twice.

    Args:
        name: 'mnist', 'cifar10' or 'cifar100'.
        root: data root to write to.

    Returns:
        The data root.

    Raises:
        DataError: for stanford_dogs (no downloader; the message says where to get it),
            or when the download fails.

    Example:
        >>> download("cifar10", "data")
    """
    spec(name)
    root = Path(root).expanduser().resolve()
    if name == "stanford_dogs":
        raise DataError(f"stanford_dogs has no automatic download: {_HOWTO[name]} (here: {root}). "
                        f"Or use the 64x64 crops in shared/data/stanford-dogs/{{train,test}}/ (JPEG files).")
    from ._compat import import_torchvision
    tv = import_torchvision()
    cls = {"mnist": tv.datasets.MNIST, "cifar10": tv.datasets.CIFAR10, "cifar100": tv.datasets.CIFAR100}[name]
    root.mkdir(parents=True, exist_ok=True)
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as e:  # network errors come as URLError/RuntimeError from deep inside
        raise DataError(f"{name}: download into {root} failed ({type(e).__name__}: {e}). Without "
                        f"internet, copy the official files into {root} instead:\n"
                        f"{_expected(name, [root])}") from e
    return root
