"""Weight sharing by k-means (Lorieul, Ghorra & Merialdo, Sec. III-C, Figs. 6 and 7).

Reason to change: how weights are clustered into a codebook, or how BatchNorm is refitted after.

* :func:`kmeans_1d` -- exact (dynamic programming) or fast (Lloyd from the optimal
  quantile-seeded start) scalar k-means; :func:`kmeans_quantise`, :func:`kmeans_sweep` -- one
  codebook of K values per layer (Fig. 6).
* :func:`filter_kmeans`, :func:`filter_kmeans_sweep` -- every conv filter replaced by its
  cluster centroid (Fig. 7); optionally followed by :func:`recalibrate_bn` (VGG16-BN's
  BatchNorm statistics, which AlexNet does not have).

Like every analysis in :mod:`triage.autopsy`, these work on a deep copy: the model passed in
is unchanged afterwards.

    >>> from triage import kmeans
    >>> kmeans.kmeans_1d(torch.tensor([0.0, 0.25, 0.75, 1.0, 5.0]), 2).centroids   # doctest: +SKIP
    tensor([0.5000, 5.0000], dtype=torch.float64)
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .autopsy import (_conv_layers, _layer_params, _limit, _working_copy, accuracy, check_compatible, layer_values,
                      weight_layers)

__all__ = ["KMeans1D", "kmeans_1d", "kmeans_quantise", "kmeans_sweep", "filter_kmeans", "filter_kmeans_sweep",
           "recalibrate_bn"]


# ----------------------------------------------------------------------------- scalar k-means
class KMeans1D(NamedTuple):
    """Result of :func:`kmeans_1d`."""
    centroids: torch.Tensor   # (K,) float64, strictly increasing
    labels: torch.Tensor      # int64, the input's shape: index of each value's centroid
    inertia: float            # sum of squared distances to the centroids
    iterations: int           # Lloyd iterations (0 for the exact method or K >= distinct values)


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"the number of clusters K must be an integer >= 1, got {k!r}")
    if k < 1:
        raise ValueError(f"the number of clusters K must be >= 1, got {k}")
    return int(k)


def _dp_bounds(W: np.ndarray, S: np.ndarray, Q: np.ndarray, k: int) -> np.ndarray:
    """Optimal bounds b[0]=0 < ... < b[k]=m of k contiguous clusters, given prefix sums.

    W, S, Q (length m+1) are prefix sums of count, value and value^2 over m sorted
    cells. Dynamic programming D_k(i) = min_j D_{k-1}(j) + cost(j, i) over the first i
    cells. The optimal j is monotone in i, so each row is computed by divide and
    conquer; one level of the recursion (all its sub-problems at once) is one
    vectorised numpy pass over at most m + (#sub-problems) candidates: a row costs
    O(m log m) in ~log2(m) passes (Gronlund et al. 2017, "Fast exact k-means,
    k-medians and Bregman divergence clustering in 1D").
    """
    m = W.size - 1
    if k >= m:
        return np.arange(m + 1)
    if k * (m + 1) > 50_000_000:
        raise ValueError(f"exact 1-D k-means with K={k} on {m} distinct values needs K*m = "
                         f"{k * m:.2e} table entries (limit 5e7); use method='fast'")

    def cost(a, b):
        s, w = S[b] - S[a], W[b] - W[a]
        return np.maximum(Q[b] - Q[a] - s * s / np.maximum(w, 1e-300), 0.0)

    def argmin(prev, i, lo, hi):
        """min over j in [lo_s, hi_s] of prev[j] + cost(j, i_s), per segment s, in one pass."""
        lens = hi - lo + 1
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
        seg = np.repeat(np.arange(i.size), lens)
        j = lo[seg] + np.arange(seg.size) - starts[seg]
        val = prev[j] + cost(j, i[seg])
        best = np.minimum.reduceat(val, starts)
        hit = np.flatnonzero(val <= best[seg])              # first minimiser of each segment
        first = hit[np.concatenate([[True], seg[hit[1:]] != seg[hit[:-1]]])]
        return best, j[first]

    prev = cost(np.zeros(m + 1, dtype=np.int64), np.arange(m + 1))  # D_1(i): cells [0, i) in one cluster
    opts = np.zeros((k + 1, m + 1), dtype=np.int64)
    rows = np.arange(m + 1)
    budget = 3 * (m + 1) * max(1, int(np.log2(m + 1)))
    for kk in range(2, k + 1):
        cur = np.full(m + 1, np.inf)
        # The last cluster never starts earlier with one cluster more: opt_{k-1}(i) <= opt_k(i)
        # (the bound Ckmeans.1d.dp uses). With many clusters the candidate ranges
        # [opt_{k-1}(i), i-1] are short: then one pass over all of them beats the
        # ~log2(m) passes of divide and conquer.
        low = np.maximum(opts[kk - 1], kk - 1) if kk > 2 else np.full(m + 1, kk - 1)
        i_all = rows[kk:]
        if int((i_all - low[kk:]).sum()) <= budget:
            cur[kk:], opts[kk, kk:] = argmin(prev, i_all, low[kk:], i_all - 1)
            prev = cur
            continue
        # Divide and conquer: sub-problems are rows i in [il, ir] whose optimal j lies in [jl, jh].
        il, ir = np.array([kk]), np.array([m])
        jl, jh = np.array([kk - 1]), np.array([m - 1])
        while il.size:
            mid = (il + ir) // 2
            hi = np.minimum(jh, mid - 1)
            lo = np.minimum(np.maximum(jl, low[mid]), hi)
            best, opt = argmin(prev, mid, lo, hi)
            cur[mid], opts[kk, mid] = best, opt
            left, right = mid - 1 >= il, mid + 1 <= ir
            il, ir, jl, jh = (np.concatenate([il[left], mid[right] + 1]),
                              np.concatenate([mid[left] - 1, ir[right]]),
                              np.concatenate([jl[left], opt[right]]),
                              np.concatenate([opt[left], jh[right]]))
        prev = cur
    b = np.zeros(k + 1, dtype=np.int64)
    b[k] = i = m
    for kk in range(k, 1, -1):
        i = b[kk - 1] = opts[kk, i]
    return b


class _Sorted1D:
    """Distinct sorted values with counts and prefix sums: any contiguous cluster's size,
    sum and squared error cost O(1), so a k-means step costs O(K log m), not O(n K)."""

    def __init__(self, values):
        t = torch.as_tensor(values).detach()
        self.shape = tuple(t.shape)
        t = t.reshape(-1).cpu()
        if t.dtype not in (torch.float32, torch.float64):
            t = t.to(torch.float64)                          # ints, halves: exact in float64
        x = t.numpy()
        if x.size == 0:
            raise ValueError("k-means needs at least one value")
        if not np.isfinite(x).all():
            raise ValueError("k-means values must be finite (found nan or inf)")
        self.x = x
        # One O(n log n) sort, in the values' own dtype (float32 weights sort twice as fast);
        # sums are then taken in float64.
        self.u_native, c = np.unique(x, return_counts=True)
        self.u = self.u_native.astype(np.float64)
        self.shift = float(x.mean(dtype=np.float64))         # centre: keeps Q - S^2/W accurate
        v = self.u - self.shift
        self.W = np.concatenate([[0.0], np.cumsum(c, dtype=np.float64)])
        self.S = np.concatenate([[0.0], np.cumsum(c * v)])
        self.Q = np.concatenate([[0.0], np.cumsum(c * v * v)])
        self.m = self.u.size

    def cost(self, a, b):
        """Squared error of the clusters made of distinct values [a, b) (arrays allowed)."""
        s, w = self.S[b] - self.S[a], self.W[b] - self.W[a]
        return np.maximum(self.Q[b] - self.Q[a] - s * s / np.maximum(w, 1), 0.0)

    def result(self, b: np.ndarray, iterations: int) -> KMeans1D:
        """KMeans1D from cluster bounds b (b[0]=0 < ... < b[K]=m, indices into u)."""
        a, e = b[:-1], b[1:]
        cent = (self.S[e] - self.S[a]) / (self.W[e] - self.W[a]) + self.shift
        labels = np.searchsorted(self.u_native[b[1:-1]], self.x, side="right")
        inertia = float(self.cost(a, e).sum())
        return KMeans1D(torch.from_numpy(cent), torch.from_numpy(labels).reshape(self.shape),
                        inertia, iterations)

    @staticmethod
    def _strict(b: np.ndarray, k: int, m: int) -> np.ndarray:
        """Make inner bounds strictly increasing within [1, m-1]: no cluster is empty."""
        j = np.arange(1, k)
        b = np.maximum.accumulate(np.maximum(b, 1) - j) + j
        return np.minimum(b, m - k + j)

    def _lloyd_bounds(self, k: int, max_iter: int, inner: np.ndarray | None = None):
        """Lloyd's algorithm on the inner bounds (default start: equal-count clusters).

        Returns (bounds b[0]=0 < ... < b[K]=m, iterations)."""
        m = self.m
        if inner is None:
            inner = np.searchsorted(self.W, self.W[-1] * np.arange(1, k) / k, side="left")
        inner = self._strict(np.asarray(inner), k, m)
        it = 0
        for it in range(1, max_iter + 1):
            b = np.concatenate([[0], inner, [m]])
            cent = (self.S[b[1:]] - self.S[b[:-1]]) / (self.W[b[1:]] - self.W[b[:-1]])
            # Lloyd's assignment step in 1-D: each value goes to its nearest centroid, so the
            # bounds are the midpoints between consecutive centroids.
            mids = (cent[:-1] + cent[1:]) / 2 + self.shift
            new = self._strict(np.searchsorted(self.u, mids, side="left"), k, m)
            if np.array_equal(new, inner):
                break
            inner = new
        return np.concatenate([[0], inner, [m]]), it

    def lloyd(self, k: int, max_iter: int) -> KMeans1D:
        return self.result(*self._lloyd_bounds(k, max_iter))

    def exact(self, k: int) -> KMeans1D:
        """The optimal K-partition (every bound between distinct values allowed)."""
        return self.result(_dp_bounds(self.W, self.S, self.Q, k), 0)

    def fast(self, k: int, grid: int, max_iter: int) -> KMeans1D:
        """Optimal partition with bounds on a coarse grid, then Lloyd from it.

        The grid is the union of ``grid`` equal-count bounds (resolution where the values
        are dense), ``grid`` equal-width bounds (resolution in the tails, where the
        optimal clusters are wide and thin) and ``grid`` bounds evenly spaced over the
        distinct values. The DP on the grid is exact for clusters
        that start and end on grid bounds, so it lands next to the global optimum's
        basin; Lloyd then moves the bounds freely, never increasing the error.
        """
        m = self.m
        if m <= 2 * grid:
            return self.exact(k)
        by_count = np.searchsorted(self.W, self.W[-1] * np.arange(1, grid) / grid, side="left")
        by_value = np.searchsorted(self.u, np.linspace(self.u[0], self.u[-1], grid + 1)[1:-1], side="left")
        by_index = np.linspace(0, m, grid + 1).round().astype(np.int64)  # >= grid cells in all
        e = np.unique(np.concatenate([by_index, by_count, by_value]))
        start = e[_dp_bounds(self.W[e], self.S[e], self.Q[e], k)]
        b, it = self._lloyd_bounds(k, max_iter, start[1:-1])
        # Lloyd never increases the error; keep the start anyway should a clamp have done so
        if self.cost(b[:-1], b[1:]).sum() > self.cost(start[:-1], start[1:]).sum():
            b, it = start, 0
        return self.result(b, it)

    def fit(self, k: int, method: str = "fast", max_iter: int = 10_000, grid: int = 256) -> KMeans1D:
        k = _check_k(k)
        if method not in ("fast", "exact", "lloyd"):
            raise ValueError(f"method must be 'fast', 'exact' or 'lloyd', got {method!r}")
        if k >= self.m:  # every distinct value is its own centroid: zero error
            return self.result(np.arange(self.m + 1), 0)
        if method == "fast":
            return self.fast(k, max(grid, 4 * k), max_iter)
        if method == "exact":
            return self.exact(k)
        return self.lloyd(k, max_iter)


def kmeans_1d(values, k: int, method: str = "fast", max_iter: int = 10_000) -> KMeans1D:
    """Scalar k-means (the paper's 1-D codebook, Sec. III-D) of any array of values.

    Why this beats ``sklearn.cluster.KMeans`` on weights: in one dimension the clusters
    of the optimum, and of every Lloyd fixed point, are contiguous runs of the sorted
    values. After one O(n log n) sort (duplicates merged into counts) and prefix sums
    of count, value and value^2, the centroid and squared error of any run cost O(1),
    independent of its size. scikit-learn instead evaluates all n x K point-centroid
    distances in every Lloyd iteration and in its k-means++ seeding (O(n K log K)),
    and stops at a tolerance from a random start. Methods:

    * ``'fast'`` (default): the optimal partition among those whose bounds lie on a
      grid of a few thousand cells (equal-count, equal-width and equal-rank bounds),
      by the exact dynamic programme below; then Lloyd's algorithm on the bounds, where
      an iteration is K binary searches (nearest-centroid = between the midpoints) and
      K prefix-sum differences, run until the bounds stop moving. Cost after the sort:
      O(K g log g) for g grid cells, independent of n. On the 2.4M weights of a VGG16
      conv layer (2 CPU cores) it took 0.2-0.5 s for every K in 2..256, against 0.6 s
      (K=2) to 35 s (K=256) for ``KMeans(n_init=1)``, with an inertia 0.01% (K=2) to 5%
      (K=128) lower (benchmarks/kmeans_1d.py measures both). On 20k Gaussian, Laplace and
      mixture samples it came within 0.05% of the exact optimum for K <= 32 and 0.5% for
      K <= 256, where scikit-learn was 3-10% above it for K >= 32.
    * ``'exact'``: the optimal partition by dynamic programming over all distinct values
      (Gronlund et al. 2017), O(K m log m) time, O(K m) memory: for tests and small layers
      (``'fast'`` uses it when there are at most twice the grid's distinct values).
    * ``'lloyd'``: Lloyd's algorithm from equal-count clusters alone (fast, but stuck in
      poor local optima for large K; for comparison).

    If ``k`` is at least the number of distinct values, each distinct value is its own
    centroid. Otherwise there are exactly K clusters, none empty, so the quantised
    values ``centroids[labels]`` take exactly K distinct values.

    Args:
        values: tensor or array of any shape (flattened; computed in float64).
        k: number of clusters (>= 1).
        method: ``'fast'``, ``'exact'`` or ``'lloyd'``.
        max_iter: Lloyd iterations at most.

    Returns:
        :class:`KMeans1D` (centroids, labels of the input's shape, inertia, iterations).

    Example:
        >>> r = kmeans_1d(torch.tensor([0., 0.1, 0.9, 1.0, 5.0]), 2)
        >>> [round(c, 3) for c in r.centroids.tolist()], r.labels.tolist()
        ([0.5, 5.0], [0, 0, 0, 0, 1])
    """
    k = _check_k(k)
    return _Sorted1D(values).fit(k, method, max_iter)


def _quantise_layers(layers, prepared: dict, k: int, method: str) -> dict:
    """Replace each layer's parameters by their k-means centroids; returns distinct counts."""
    distinct = {}
    with torch.no_grad():
        for name, m in layers.items():
            r = prepared[name].fit(k, method)
            q = r.centroids[r.labels]
            offset = 0
            for param in _layer_params(m):
                n = param.numel()
                param.copy_(q[offset: offset + n].reshape(param.shape).to(param.device, param.dtype))
                offset += n
            distinct[name] = r.centroids.numel()
    return distinct


def kmeans_quantise(model: nn.Module, k: int, layers=None, method: str = "fast") -> nn.Module:
    """A copy of ``model`` sharing K values per layer (scalar k-means, Sec. III-D, Fig. 6).

    "We learn one specific codebook for each layer": all the parameters of a layer
    (weight and bias) are clustered together with :func:`kmeans_1d`, and each is
    replaced by its centroid, so every layer holds exactly ``min(K, distinct values)``
    distinct values. (Storing the float64 centroids back in float32 cannot merge two:
    clusters are runs of sorted float32 values, so each centroid rounds to a value
    between its cluster's smallest and largest member.)

    Args:
        model: not modified.
        k: codebook size per layer (>= 1).
        layers: see :func:`weight_layers`.
        method: ``'fast'``, ``'exact'`` or ``'lloyd'`` (see :func:`kmeans_1d`).

    Example:
        >>> q = kmeans_quantise(nn.Sequential(nn.Linear(100, 10)), 32)
        >>> torch.unique(torch.cat([q[0].weight.flatten(), q[0].bias])).numel()
        32
    """
    k = _check_k(k)
    out = _working_copy(model)
    sel = weight_layers(out, layers)
    _quantise_layers(sel, {n: _Sorted1D(layer_values(m)) for n, m in sel.items()}, k, method)
    return out


def kmeans_sweep(model: nn.Module, loader, ks: Sequence[int] = (2, 4, 8, 16, 32, 64, 128, 256),
                 layers=None, method: str = "fast", max_batches: int | None = None,
                 num_classes: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Accuracy after scalar k-means weight sharing, for a sweep of K (Fig. 6).

    Each layer's values are sorted once and reused for every K.

    Returns:
        DataFrame with columns ``k``, ``acc``, ``error``, ``loss``, ``max_distinct``
        (the largest number of distinct values in any layer: K, or less for a layer
        with fewer values) and ``bits`` (log2 K, the index width a codebook needs).
    """
    ks = [_check_k(k) for k in ks]
    check_compatible(model, loader, num_classes)
    work = _working_copy(model)
    sel = weight_layers(work, layers)
    prepared = {n: _Sorted1D(layer_values(m)) for n, m in sel.items()}
    rows = []
    for k in tqdm(ks, desc="k-means", disable=not progress, leave=False):
        distinct = _quantise_layers(sel, prepared, k, method)
        r = accuracy(work, loader, max_batches)
        rows.append({"k": k, "acc": r["acc"], "error": 1 - r["acc"], "loss": r["loss"],
                     "max_distinct": max(distinct.values()), "bits": math.log2(k)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- filter (vector) k-means
def _kmeans_vectors(x: torch.Tensor, c: int, generator: torch.Generator, n_iter: int = 100):
    """k-means++ seeding then Lloyd on the rows of x (float64). Returns (centroids, labels)."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    cent = [x[first]]
    d2 = ((x - x[first]) ** 2).sum(1)
    for _ in range(1, c):
        if d2.sum() <= 0:  # fewer distinct filters than clusters: take any not yet chosen
            nxt = int(torch.randint(n, (1,), generator=generator))
        else:
            nxt = int(torch.multinomial(d2 / d2.sum(), 1, generator=generator))
        cent.append(x[nxt])
        d2 = torch.minimum(d2, ((x - x[nxt]) ** 2).sum(1))
    cent = torch.stack(cent)
    labels = torch.cdist(x, cent).argmin(1)
    for _ in range(n_iter):
        counts = torch.bincount(labels, minlength=c).to(x.dtype)
        sums = torch.zeros_like(cent).index_add_(0, labels, x)
        keep = counts > 0  # an emptied cluster keeps its old centroid
        cent = torch.where(keep[:, None], sums / counts.clamp(min=1)[:, None], cent)
        new = torch.cdist(x, cent).argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
    return cent, labels


def _filter_quantise(convs, originals: dict, clusters: int, seed: int) -> None:
    with torch.no_grad():
        for i, (name, m) in enumerate(convs.items()):
            w = originals[name]
            n = w.shape[0]
            if clusters >= n:
                m.weight.copy_(w)
                continue
            x = w.reshape(n, -1).double().cpu()
            cent, labels = _kmeans_vectors(x, clusters, torch.Generator().manual_seed(seed + i))
            m.weight.copy_(cent[labels].reshape(w.shape).to(w.device, w.dtype))


def filter_kmeans(model: nn.Module, clusters: int, layers=None, seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose conv filters are replaced by their cluster centroids (Fig. 7).

    Per conv layer, the filters (``weight[o]`` as vectors; biases unchanged) are
    clustered into ``clusters`` groups by k-means (k-means++ seeding, Lloyd to
    convergence) and each filter becomes its cluster's centroid: the layer keeps at
    most ``clusters`` distinct filters. A layer with no more filters than ``clusters``
    is left as it is.

    Args:
        model: not modified.
        clusters: clusters per layer (>= 1).
        layers: conv layer names (None: every conv layer).
        seed: seed of the k-means++ seeding.

    Raises:
        ValueError: the model has no conv layer, or clusters < 1.

    Example:
        >>> q = filter_kmeans(model, 8)                               # doctest: +SKIP
    """
    clusters = _check_k(clusters)
    out = _working_copy(model)
    convs = _conv_layers(out, layers)
    _filter_quantise(convs, {n: m.weight.detach().clone() for n, m in convs.items()}, clusters, seed)
    return out


def recalibrate_bn(model: nn.Module, loader, max_batches: int | None = None) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance on ``loader`` (in place).

    The statistics are reset and averaged over the batches with equal weight
    (``momentum=None``); only the BN layers run in train mode, nothing is learnt. Used
    after filter k-means: a centroid filter's outputs no longer match the running
    statistics of the filter it replaced (AlexNet, the paper's network, has no BN).

    Args:
        model: changed in place (pass a copy) and returned, in eval mode.
        loader: (x, y) batches, e.g. training images.
        max_batches: use only the first batches.

    Example:
        >>> q = recalibrate_bn(filter_kmeans(model, 8), train_loader, max_batches=10)   # doctest: +SKIP
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    model.eval()
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        with torch.no_grad():
            for x, _ in _limit(loader, max_batches):
                model(x)
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.eval()
    return model


def filter_kmeans_sweep(model: nn.Module, loader, clusters: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128),
                        layers=None, seed: int = 0, max_batches: int | None = None,
                        num_classes: int | None = None, bn_loader=None, bn_batches: int | None = None,
                        progress: bool = True) -> pd.DataFrame:
    """Accuracy after filter k-means in every conv layer at once, for a sweep of cluster counts (Fig. 7).

    Args:
        model: not modified.
        loader: (x, y) test batches.
        clusters: clusters per conv layer.
        layers: conv layers to cluster (None: all).
        seed: seed of the k-means++ seeding.
        max_batches: evaluate on the first batches only.
        num_classes: passed to :func:`check_compatible`.
        bn_loader: if given, every point is also evaluated after :func:`recalibrate_bn` on
            these (training) batches: rows with ``bn == 'recalibrated'``.
        bn_batches: batches of ``bn_loader`` to use.
        progress: tqdm bar.

    Returns:
        DataFrame with columns ``clusters``, ``bn`` (``'original'`` running statistics, or
        ``'recalibrated'``), ``acc``, ``error``, ``loss`` and ``filter_share``: the share of
        filters kept distinct, mean over conv layers of min(clusters, filters) / filters.
    """
    clusters = [_check_k(c) for c in clusters]
    convs_orig = _conv_layers(model, layers)
    check_compatible(model, loader, num_classes)
    work = _working_copy(model)
    convs = _conv_layers(work, list(convs_orig))
    originals = {n: m.weight.detach().clone() for n, m in convs.items()}
    bn_state = {k: v.clone() for k, v in work.state_dict().items() if "running_" in k or "num_batches" in k}
    rows = []
    for c in tqdm(clusters, desc="filter k-means", disable=not progress, leave=False):
        work.load_state_dict(bn_state, strict=False)       # the original running statistics
        _filter_quantise(convs, originals, c, seed)
        share = float(np.mean([min(c, m.out_channels) / m.out_channels for m in convs.values()]))
        modes = [("original", None)] + ([("recalibrated", bn_loader)] if bn_loader is not None else [])
        for mode, bl in modes:
            if bl is not None:
                recalibrate_bn(work, bl, bn_batches)
            r = accuracy(work, loader, max_batches)
            rows.append({"clusters": c, "bn": mode, "acc": r["acc"], "error": 1 - r["acc"], "loss": r["loss"],
                         "filter_share": share})
    return pd.DataFrame(rows)
