"""Tests of triage.data (and the triage.formats it reads with) on the real data in shared/data
(MANIFEST.md gives the expected values). The loaders are tests/test_loaders.py."""
import hashlib
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from triage import data as D
from triage import formats
from triage.data import (DATASETS, DataError, channel_stats, download, load_split, resolve_root, source_spec, spec,
                         stratified_subset, validation_split)

MNIST_COUNTS = {"train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
                "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]}


@pytest.fixture(autouse=True, scope="module")
def _cache(triage_cache):
    """All tests here decode into a session-private cache."""
    return triage_cache


def sha256(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def nhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def copy_mnist(src, dst, names=("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")):
    raw = dst / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy(src / "MNIST" / "raw" / n, raw / n)
    return raw


@pytest.fixture(scope="module")
def dogs_train(shared_data):
    """The first 300 Stanford Dogs training crops as Pillow decodes them (NHWC), with names and labels."""
    from PIL import Image
    folder = shared_data / "stanford-dogs" / "train"
    files = (shared_data / "stanford-dogs" / "train.txt").read_text().split()[:300]
    imgs = np.stack([np.asarray(Image.open(folder / f).convert("RGB")) for f in files])
    classes = sorted({f.split("/")[0] for f in (shared_data / "stanford-dogs" / "train.txt").read_text().split()})
    labels = np.array([classes.index(f.split("/")[0]) for f in files])
    return imgs, files, labels


# ----------------------------------------------------------------------------- spec
@pytest.mark.parametrize("name,n,c,size", [("mnist", 10, 1, 32), ("cifar10", 10, 3, 32),
                                           ("cifar100", 100, 3, 32), ("stanford_dogs", 120, 3, 64)])
def test_spec(name, n, c, size):
    sp = spec(name)
    assert (sp.name, sp.num_classes, sp.in_channels, sp.image_size) == (name, n, c, size)
    assert len(sp.classes) == len(set(sp.classes)) == n
    assert ("64x64 crops" in sp.note) == (name == "stanford_dogs")


def test_spec_unknown():
    assert DATASETS == ("mnist", "cifar10", "cifar100", "stanford_dogs")
    with pytest.raises(DataError, match="cifar10.*stanford_dogs"):
        spec("imagenet")


def test_spec_classes_match_data(shared_data):
    with open(shared_data / "cifar-10-official-meta" / "batches.meta", "rb") as f:
        assert spec("cifar10").classes == tuple(n.decode() for n in pickle.load(f, encoding="bytes")[b"label_names"])
    with open(shared_data / "cifar-100-official-meta" / "meta", "rb") as f:
        fine = pickle.load(f, encoding="bytes")[b"fine_label_names"]
    assert spec("cifar100").classes == tuple(n.decode() for n in fine)
    for name, rel in (("cifar10", "cifar-10/test.npz"), ("cifar100", "cifar-100/test.npz")):
        with np.load(shared_data / rel) as z:
            assert spec(name).classes == tuple(z["classes"].tolist())
    folders = sorted({f.split("/")[0] for f in (shared_data / "stanford-dogs" / "test.txt").read_text().split()})
    assert spec("stanford_dogs").classes == tuple(f.split("-", 1)[1] for f in folders)
    assert spec("mnist").classes == tuple("0123456789")


# ----------------------------------------------------------------------------- real splits
@pytest.mark.parametrize("split,n", [("train", 60000), ("test", 10000)])
def test_mnist_split(shared_data, verify, split, n):
    x, y = load_split("mnist", split, shared_data)
    assert x.shape == (n, 1, 32, 32) and x.dtype == torch.uint8 and x.is_contiguous()
    assert y.shape == (n,) and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == MNIST_COUNTS[split]
    # 2-px zero border around the official 28x28 digits
    prefix = "train" if split == "train" else "t10k"
    official = verify.idx_array(shared_data / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte.gz")
    assert np.array_equal(x[:, 0, 2:30, 2:30].numpy(), official)
    border = x.clone()
    border[:, :, 2:30, 2:30] = 0
    assert not border.any()


# Full decodes cost ~7-9 s each on one core; the default run keeps the splits other tests need
# and leaves CIFAR-100 train and the Stanford Dogs splits to `-m slow`.
@pytest.mark.parametrize("rel", ["cifar-10/train.npz", "cifar-10/test.npz",
                                 pytest.param("cifar-100/train.npz", marks=pytest.mark.slow), "cifar-100/test.npz"])
def test_cifar_split(shared_data, verify, rel):
    name = "cifar10" if rel.startswith("cifar-10/") else "cifar100"
    split = rel.split("/")[1][:-4]
    exp = verify.CIFAR_EXPECT[rel]
    x, y = load_split(name, split, shared_data)
    assert x.shape == (exp["n"], 3, 32, 32) and x.dtype == torch.uint8 and x.is_contiguous()
    assert y.dtype == torch.int64
    assert torch.bincount(y).tolist() == [exp["per_class"]] * exp["ncls"]
    # the recorded sha256 of the decoded official pixels (NHWC) and labels
    assert sha256(nhwc(x)) == exp["x"] and sha256(y.numpy()) == exp["y"]


@pytest.mark.slow
@pytest.mark.parametrize("split", ["train", "test"])
def test_dogs_split(shared_data, verify, split):
    exp = verify.DOGS_EXPECT[f"stanford-dogs/{split}"]
    x, y = load_split("stanford_dogs", split, shared_data)
    assert x.shape == (exp["n"], 3, 64, 64) and x.dtype == torch.uint8 and x.is_contiguous()
    assert torch.bincount(y, minlength=120).tolist() == exp["per_class"]
    assert sha256(nhwc(x)) == exp["x"] and sha256(y.numpy()) == exp["y"]


def test_dogs_crops_are_pillows_pixels(shared_data, dogs_train, tmp_path):
    """The shared JPEG crops load as Pillow decodes them, in list order, labelled by sorted folder."""
    imgs, files, labels = dogs_train
    root = tmp_path / "stanford-dogs"
    (root / "train").mkdir(parents=True)
    keep = files[:5] + files[-5:]
    for f in keep:
        (root / "train" / f).parent.mkdir(exist_ok=True)
        shutil.copy(shared_data / "stanford-dogs" / "train" / f, root / "train" / f)
    # a list naming all 120 breeds is what fixes the labels: keep the real list's folders
    (root / "train.txt").write_text("\n".join(keep) + "\n")
    with pytest.raises(DataError, match="120"):
        load_split("stanford_dogs", "train", tmp_path)        # 2 breeds only: labels would shift
    full_x, full_y = load_split("stanford_dogs", "train", shared_data)
    assert full_x.shape == (12000, 3, 64, 64)
    assert np.array_equal(nhwc(full_x[:300]), imgs) and full_y[:300].tolist() == labels.tolist()
    # a truncated JPEG is a DataError that says so, not a Pillow traceback
    bad = root / "train" / keep[0]
    bad.write_bytes(bad.read_bytes()[:200])
    (root / "train.txt").write_text("\n".join(files[:1]) + "\n")
    with pytest.raises(DataError, match="corrupt|120"):
        load_split("stanford_dogs", "train", tmp_path)


# ----------------------------------------------------------------------------- caching and stats
def test_disk_cache(shared_data, tmp_path, monkeypatch):
    root = tmp_path / "root"
    raw = copy_mnist(shared_data, root)
    monkeypatch.setenv("TRIAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(D, "_MEMO", {})
    x, y = load_split("mnist", "test", root)
    assert sorted(p.name.split(".", 1)[1] for p in (tmp_path / "cache").iterdir()) == ["x.npy", "y.npy"]
    assert load_split("mnist", "test", root)[0] is x          # in-process cache

    def boom(files):
        raise AssertionError("decoded again")
    monkeypatch.setattr(D, "_MEMO", {})
    monkeypatch.setitem(formats.DECODERS, "idx", boom)
    x2, y2 = load_split("mnist", "test", root)                 # from the .npy cache
    assert torch.equal(x, x2) and torch.equal(y, y2)
    st = (raw / "t10k-labels-idx1-ubyte.gz").stat()
    os.utime(raw / "t10k-labels-idx1-ubyte.gz", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(DataError, match="decoded again"):      # a changed source is decoded again
        load_split("mnist", "test", root)


@pytest.mark.parametrize("name,mean,std", [  # published values (MANIFEST sections 2, 3 and 4.3)
    ("cifar10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    pytest.param("cifar100", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), marks=pytest.mark.slow),
    pytest.param("stanford_dogs", (0.4801, 0.4404, 0.3802), (0.2660, 0.2580, 0.2575), marks=pytest.mark.slow),
])
def test_channel_stats(shared_data, name, mean, std, monkeypatch):
    monkeypatch.setattr(D, "_STATS", {})  # earlier tests may have memoised them under another cache dir
    got_mean, got_std = channel_stats(name, shared_data)
    assert got_mean == pytest.approx(mean, abs=1e-3) and got_std == pytest.approx(std, abs=1e-3)
    assert list(D._cache_dir().glob(f"{name}-train-*.stats.json"))


# ----------------------------------------------------------------------------- official layouts
def test_cifar10_official_pickles(shared_data, tmp_path):
    x, y = load_split("cifar10", "train", shared_data)
    xt, yt = load_split("cifar10", "test", shared_data)
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    shutil.copy(shared_data / "cifar-10-official-meta" / "batches.meta", base / "batches.meta")
    rows = np.arange(0, 50000, 250)                            # 200 real images, 40 per batch
    for b in range(5):
        r = rows[b * 40:(b + 1) * 40]
        with open(base / f"data_batch_{b + 1}", "wb") as f:
            pickle.dump({b"batch_label": f"training batch {b + 1} of 5".encode(),
                         b"labels": y[r].tolist(), b"data": x[r].reshape(len(r), 3072).numpy(),
                         b"filenames": [b"x.png"] * len(r)}, f)
    with open(base / "test_batch", "wb") as f:
        pickle.dump({b"batch_label": b"testing batch 1 of 1", b"labels": yt[:50].tolist(),
                     b"data": xt[:50].reshape(50, 3072).numpy(), b"filenames": [b"x.png"] * 50}, f)
    x2, y2 = load_split("cifar10", "train", tmp_path)
    assert torch.equal(x2, x[rows]) and torch.equal(y2, y[rows])
    x3, y3 = load_split("cifar10", "test", tmp_path)
    assert torch.equal(x3, xt[:50]) and torch.equal(y3, yt[:50])


def test_cifar100_official_pickles(shared_data, tmp_path):
    x, y = load_split("cifar100", "test", shared_data)
    with np.load(shared_data / "cifar-100" / "test.npz") as z:
        yc = z["y_coarse"]
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    shutil.copy(shared_data / "cifar-100-official-meta" / "meta", base / "meta")
    for split, r in (("train", np.arange(200)), ("test", np.arange(200, 300))):
        with open(base / split, "wb") as f:
            pickle.dump({b"filenames": [b"x.png"] * len(r), b"batch_label": split.encode(),
                         b"fine_labels": y[r].tolist(), b"coarse_labels": yc[r].tolist(),
                         b"data": x[r].reshape(len(r), 3072).numpy()}, f)
    x2, y2 = load_split("cifar100", "train", tmp_path)
    assert torch.equal(x2, x[:200]) and torch.equal(y2, y[:200])
    assert torch.equal(load_split("cifar100", "test", tmp_path)[0], x[200:300])


def test_dogs_official_layout(dogs_train, tmp_path):
    from PIL import Image
    from scipy.io import savemat

    all_imgs, all_files, all_labels = dogs_train
    rows = np.array([0, 1, 100, 101, 200, 201])               # two images of each of breeds 0, 1, 2
    imgs, files, labels = all_imgs[rows], [all_files[i] for i in rows], all_labels[rows]
    boxes = {1: (8, 4, 40, 60)}                                # image 1: a sub-box
    for i, rel in enumerate(files):
        path = tmp_path / "Images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(imgs[i]).save(path, quality=95)
        if i == 4:
            continue                                          # no annotation: whole photo
        x0, y0, x1, y1 = boxes.get(i, (0, 0, 64, 64))
        ann = tmp_path / "Annotation" / rel.removesuffix(".jpg")
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text(f"<annotation><size><width>64</width><height>64</height></size><object><name>dog</name>"
                       f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>"
                       f"</object><object><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>9</xmax><ymax>9</ymax>"
                       f"</bndbox></object></annotation>")
    (tmp_path / "lists").mkdir()
    for split, idx in (("train", [0, 1, 2, 4]), ("test", [3, 5])):
        savemat(tmp_path / "lists" / f"{split}_list.mat", {
            "file_list": np.array([[files[i]] for i in idx], dtype=object),
            "annotation_list": np.array([[files[i][:-4]] for i in idx], dtype=object),
            "labels": (labels[idx] + 1).astype(np.float64).reshape(-1, 1)})   # official: 1-based
    x, y = load_split("stanford_dogs", "train", tmp_path)
    assert x.shape == (4, 3, 64, 64) and x.dtype == torch.uint8
    assert y.tolist() == labels[[0, 1, 2, 4]].tolist() == [0, 0, 1, 2]
    on_disk = [np.asarray(Image.open(tmp_path / "Images" / files[i])) for i in range(6)]
    for j, i in ((0, 0), (2, 2), (3, 4)):                      # full box or no annotation: unchanged
        assert np.array_equal(nhwc(x)[j], on_disk[i])
    # the sub-box, upsampled, is close to the same crop upsampled by torch (not e.g. a transposed box)
    crop = torch.tensor(on_disk[1][4:60, 8:40]).permute(2, 0, 1)[None].float()
    ref = F.interpolate(crop, size=(64, 64), mode="bilinear", align_corners=False)[0]
    assert (x[1].float() - ref).abs().mean() < 3
    xt, yt = load_split("stanford_dogs", "test", tmp_path)
    assert xt.shape == (2, 3, 64, 64) and yt.tolist() == [1, 2]
    sp = source_spec("stanford_dogs", tmp_path)
    assert "official photos" in sp.note and sp.num_classes == 120


def test_download_mnist_via_torchvision(shared_data, tmp_path):
    copy_mnist(shared_data, tmp_path, names=[p.name for p in (shared_data / "MNIST" / "raw").glob("*.gz")])
    assert download("mnist", tmp_path) == tmp_path.resolve()   # md5 matches: no network, just extraction
    assert (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    for split in ("train", "test"):
        x, y = load_split("mnist", split, tmp_path)
        x0, y0 = load_split("mnist", split, shared_data)
        assert torch.equal(x, x0) and torch.equal(y, y0)


def test_download_dogs_explains(tmp_path):
    with pytest.raises(DataError, match="vision.stanford.edu/aditya86/ImageNetDogs"):
        download("stanford_dogs", tmp_path)


# ----------------------------------------------------------------------------- errors and roots
def test_empty_root_names_root_and_files(tmp_path):
    with pytest.raises(DataError) as e:
        load_split("mnist", "train", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and "train-images-idx3-ubyte" in msg
    assert "python -m triage download mnist" in msg
    with pytest.raises(DataError, match=r"(?s)lists/train_list\.mat.*stanford-dogs/ +train\.txt, train/.*ImageNetDogs"):
        load_split("stanford_dogs", "train", tmp_path)
    with pytest.raises(DataError, match="split"):
        load_split("mnist", "val", tmp_path)


def _truncate(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])


def _flip_middle(p):
    b = bytearray(p.read_bytes())
    b[len(b) // 2: len(b) // 2 + 64] = bytes(64)
    p.write_bytes(bytes(b))


@pytest.mark.parametrize("name,rel,damage", [
    ("cifar10", "cifar-10/test.npz", _truncate),
    ("cifar10", "cifar-10/test.npz", _flip_middle),
    ("mnist", "MNIST/raw/t10k-images-idx3-ubyte.gz", _truncate),
])
def test_corrupt_file_raises_data_error(shared_data, tmp_path, name, rel, damage):
    src = shared_data / rel
    dst = tmp_path / rel
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    if name == "mnist":
        shutil.copy(src.with_name("t10k-labels-idx1-ubyte.gz"), dst.with_name("t10k-labels-idx1-ubyte.gz"))
    damage(dst)
    with pytest.raises(DataError, match="corrupt") as e:
        load_split(name, "test", tmp_path)
    assert str(dst) in str(e.value) and e.value.__cause__ is not None


def test_corrupt_pickle(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    (base / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="test_batch"):
        load_split("cifar10", "test", tmp_path)


def test_resolve_root(shared_data, tmp_path, monkeypatch):
    monkeypatch.delenv("TRIAGE_DATA", raising=False)
    copy_mnist(shared_data, tmp_path / "a")
    assert resolve_root(tmp_path / "a", "mnist") == (tmp_path / "a").resolve()
    with pytest.raises(DataError, match="cifar-10"):           # an explicit root is the only one tried
        resolve_root(tmp_path / "a", "cifar10")
    monkeypatch.setenv("TRIAGE_DATA", str(tmp_path / "a"))
    assert resolve_root(dataset="mnist") == (tmp_path / "a").resolve()
    monkeypatch.delenv("TRIAGE_DATA")
    copy_mnist(shared_data, tmp_path / "cwd" / "data")         # ./data comes first
    monkeypatch.chdir(tmp_path / "cwd")
    assert resolve_root(dataset="mnist") == (tmp_path / "cwd" / "data").resolve()
    assert formats.locate("cifar10", resolve_root(dataset="cifar10"), "train")   # found further down
    monkeypatch.setattr(D, "_default_roots", lambda: [tmp_path / "x", tmp_path / "y"])
    with pytest.raises(DataError) as e:
        resolve_root(dataset="cifar100")
    assert str(tmp_path / "x") in str(e.value) and str(tmp_path / "y") in str(e.value)


# ----------------------------------------------------------------------------- subsets
def test_stratified_subset(shared_data):
    _, y = load_split("mnist", "test", shared_data)
    idx = stratified_subset(y, 900, seed=3)
    assert torch.bincount(y[idx]).tolist() == [min(900, c) for c in MNIST_COUNTS["test"]]  # class 5 has 892
    assert torch.equal(idx, torch.sort(idx).values) and len(torch.unique(idx)) == len(idx)
    assert torch.equal(idx, stratified_subset(y, 900, seed=3))
    assert not torch.equal(stratified_subset(y, 10, seed=3), stratified_subset(y, 10, seed=4))
    assert torch.bincount(y[stratified_subset(y, 10, seed=0)]).tolist() == [10] * 10
    assert torch.equal(stratified_subset(y, None, seed=0), torch.arange(len(y)))
    assert len(stratified_subset(y, 0, seed=0)) == 0


def test_validation_split():
    y = torch.tensor([0] * 10 + [1] * 4 + [2])
    tr, va = validation_split(y, 0.25, seed=3)
    assert torch.bincount(y[va], minlength=3).tolist() == [2, 1, 0]   # round(2.5) = 2; a singleton stays in train
    assert torch.equal(torch.sort(torch.cat([tr, va])).values, torch.arange(len(y)))   # a partition
    assert torch.equal(tr, torch.sort(tr).values) and torch.equal(va, torch.sort(va).values)
    again = validation_split(y, 0.25, seed=3)
    assert torch.equal(again[0], tr) and torch.equal(again[1], va)
    assert any(not torch.equal(validation_split(y, 0.25, seed=s)[1], va) for s in range(4, 10))
    with pytest.raises(ValueError, match="fraction"):
        validation_split(y, 0.6, seed=0)
