"""Data sets of Deep Net Triage: what they are, how they are read from disk, which images a run uses.

One reason to change: what the data sets are and which of their images a run gets (specs
and class names, finding the data root, the decoded-array cache, channel statistics, the
stratified subsets and the validation split, the download). The files' on-disk layouts and
their decoders are :mod:`triage.formats`; how images reach training (batches cut, flipped,
normalised on the device) is :mod:`triage.loaders`, which imports this module, never the
reverse.

The paper trains VGG16-BN on MNIST, CIFAR-10, CIFAR-100 and Stanford Dogs.
Each data set is read from whichever supported layout is under the data root
(the official downloads, or the compact lossless files of ``shared/data``,
see its MANIFEST.md), decoded once to uint8 ``(N, C, H, W)`` tensors and
cached on disk.

    >>> x, y = load_split("cifar10", "train")      # uint8 (50000, 3, 32, 32), int64 (50000,)
    >>> idx = stratified_subset(y, 500, seed=0)    # 500 images of every class
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .formats import DECODER_VERSION, DECODERS, LAYOUTS, locate

__all__ = ["DATASETS", "DataError", "DatasetSpec", "spec", "source_spec", "resolve_root", "load_split",
           "channel_stats", "stratified_subset", "validation_split", "download"]

DATASETS = ("mnist", "cifar10", "cifar100", "stanford_dogs")
SPLITS = ("train", "test")

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


def source_spec(name: str, root=None) -> DatasetSpec:
    """:func:`spec` of the files found under the data root: its note says how *these* images differ
    from the paper's (Stanford Dogs has two sources, the shared crops and the official photos).

    Example:
        >>> source_spec("stanford_dogs").note     # e.g. 'Stanford Dogs images are 64x64 crops ...'
    """
    sp = spec(name)
    if name == "stanford_dogs" and _resolve(name, "train", root)[1] == "jpeg":
        sp = replace(sp, note=_DOGS_OFFICIAL_NOTE)
    return sp


# ----------------------------------------------------------------------------- the data root
# The files each data set is accepted in, and their decoders, are triage.formats.
_HOWTO = {
    "mnist": "get it with `python -m triage download mnist --data-root DIR` (torchvision, needs internet)",
    "cifar10": "get it with `python -m triage download cifar10 --data-root DIR` (torchvision, needs internet)",
    "cifar100": "get it with `python -m triage download cifar100 --data-root DIR` (torchvision, needs internet)",
    "stanford_dogs": (f"download images.tar, annotation.tar and lists.tar from {_DOGS_URL} and extract "
                      "them into the data root so that it holds Images/<wnid>-<breed>/*.jpg, "
                      "Annotation/<wnid>-<breed>/*, lists/{train,test}_list.mat"),
}


def _expected(name: str, roots) -> str:
    lines = []
    for root in roots:
        gone = "" if Path(root).is_dir() else "  (this root does not exist)"
        for _, rel, files in LAYOUTS[name]:
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
        if any(locate(n, r, s) for n in names for s in SPLITS):
            return r
    if explicit is not None and dataset is None:
        return roots[0]  # an explicit root need not hold anything yet (e.g. for download)
    if dataset is None:
        raise DataError(f"no data set found under any of {', '.join(map(str, roots))}; "
                        f"get one with `python -m triage download NAME --data-root DIR`")
    raise _missing(dataset, roots)


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
    parts = [str(DECODER_VERSION), name, split, kind]
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
    found = locate(name, r, split)
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
            arrays = DECODERS[kind](files)
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


# ----------------------------------------------------------------------------- subsets
def _class_ranks(y: torch.Tensor, seed: int):
    """(order, rank, counts): a random order of the labels ``y``, stably sorted by class, and the
    rank of each position within its class.

    Random order, then a stable sort by class: each class's examples in random order, so the
    first k of each class are a uniform draw. No per-class Python loop.
    """
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    order = order[torch.argsort(y[order], stable=True)]
    counts = torch.bincount(y)
    return order, torch.arange(len(y)) - (torch.cumsum(counts, 0) - counts)[y[order]], counts


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
    order, rank, _ = _class_ranks(y, seed)
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
    order, rank, counts = _class_ranks(y, 10_007 + seed)
    n_val = torch.clamp(torch.round(counts.double() * fraction).long(), min=1)
    n_val = torch.where(counts > 1, n_val, torch.zeros_like(n_val))    # a singleton class stays in train
    is_val = rank < n_val[y[order]]
    return torch.sort(order[~is_val]).values, torch.sort(order[is_val]).values


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
