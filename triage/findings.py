"""The autopsy paper's observations checked against stored tables: numbers, then verdict prose.

Reason to change: what the chapter claims about the paper's observations, or how it words them.

:func:`findings` reads the tables of :func:`triage.studies.autopsy_run` (one dict per data
set) into one row of numbers per data set; :func:`verdicts` turns them into one markdown
sentence per observation (book/autopsy.ipynb). Pure functions of the tables: no model, no data.

    >>> f = findings({"mnist": studies.autopsy_run(cfg)})   # doctest: +SKIP
    >>> verdicts(f)["kmeans"]                                # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["base_summary", "table1_glue", "findings", "verdicts"]


# ----------------------------------------------------------------------------- what was dissected
def base_summary(results: dict) -> pd.DataFrame:
    """The base models analysed: test accuracy, test images and parameters, one row per data set.

    Args:
        results: data set -> :func:`triage.studies.autopsy_run` output.
    """
    return pd.DataFrame({ds: {"test accuracy": r["meta"]["base_acc"], "test images": r["meta"]["test_images"],
                              "parameters": r["params"].set_index("layer").loc["total", "params"]}
                         for ds, r in results.items()}).T.astype({"test images": int, "parameters": int})


def table1_glue(t1: pd.DataFrame) -> dict:
    """Our count of AlexNet's Table I against the paper's, as the chapter's numbers.

    The paper's fc7 row is fc7's weights without their biases while its total counts them,
    so rows are compared without fc7 (``alex_rows_equal`` of ``alex_rows``, the total
    included), and ``alex_rows_sum`` shows the paper's rows do not add up to its total.

    Args:
        t1: :func:`triage.autopsy.parameter_table` of AlexNet with the paper's counts in a
            ``paper`` column.

    Returns:
        ``alex_total``, ``alex_rows_equal``, ``alex_rows``, ``alex_fc7_weights``, ``alex_fc7_params``,
        ``alex_rows_sum``, ``alex_conv_share`` (% of all parameters in conv layers).
    """
    same = (t1["params"] == t1["paper"]).drop(index="fc7")
    return {"alex_total": int(t1.loc["total", "params"]), "alex_rows_equal": int(same.sum()), "alex_rows": len(same),
            "alex_fc7_weights": int(t1.loc["fc7", "weights"]), "alex_fc7_params": int(t1.loc["fc7", "params"]),
            "alex_rows_sum": int(t1.loc[t1.index != "total", "paper"].sum()),
            "alex_conv_share": float(t1.loc[t1.kind == "conv", "share"].sum())}


# ----------------------------------------------------------------------------- the paper's claims, checked
def _smallest(df: pd.DataFrame, col: str, ok: pd.Series):
    """Smallest value of ``col`` among rows where ``ok`` holds and keeps holding above it."""
    d = df.assign(_ok=ok.to_numpy()).sort_values(col)
    bad = d.loc[~d["_ok"], col]
    rest = d[d[col] > bad.max()] if len(bad) else d
    return rest[col].iloc[0] if len(rest) else None


def findings(results: dict, tolerance: float = 1.0) -> pd.DataFrame:
    """The numbers behind each of the paper's observations, one row per data set.

    Args:
        results: data set -> :func:`triage.studies.autopsy_run` output.
        tolerance: accuracy loss (points) that counts as "unaffected".

    Returns:
        DataFrame indexed by data set with: base_acc, test_images, conv_share (% of
        parameters in conv layers), conv_std, fc_std, fc_skew_first, fc_skew_last,
        pca_first_half (alpha at half the components in the first conv layer),
        pca_depth_corr (Spearman correlation of depth with alpha at half the components;
        negative = curves flatten with depth), sparsity_conv (mean over conv ReLUs),
        sparsity_fc (mean over fc ReLUs), noise10_drop (points lost at 10% noise, mean of
        draws), noise_tolerance (largest strength losing <= tolerance), noise_knee_drop
        (points lost at the strongest swept noise <= 60%), layer_most / layer_least
        (the layer whose noise alone costs most / least at the largest per-layer
        strength), decimals_needed (fewest decimals losing <= tolerance), k_needed
        (smallest K losing <= tolerance for it and every larger K), k32_drop,
        clusters_needed / clusters_share (same for filter k-means, and the share of filters
        it keeps distinct; None if none in the sweep), clusters_needed_recal /
        clusters_share_recal (the same after re-estimating the BN statistics).
    """
    rows = {}
    for ds, r in results.items():
        base = r["meta"]["base_acc"]
        pts = lambda acc: 100 * (base - acc)  # noqa: E731 - points of accuracy lost
        params = r["params"].set_index("layer")
        body = params.drop(index="total")
        st = r["stats_layer"].set_index("layer")
        fc = st[st["kind"] == "fc"]
        kind = r["stats_kind"].set_index("kind")
        pca = r["pca"]
        half = pca[pca["k"] == np.ceil(pca["components"] / 2)].drop_duplicates("layer")
        order = {n: i for i, n in enumerate(st.index)}
        depth = half["layer"].map(order)
        sp = r["sparsity"]
        relu = sp[sp["module"] != "output"]
        kinds = st["kind"].reindex(relu["after"]).to_numpy()
        noise = r["noise"].groupby("p")["acc"].mean()
        ln = r["layer_noise"]
        ln = ln[(ln["target"] != "all") & (ln["p"] == ln["p"].max())].groupby("target")["acc"].mean()
        rnd = r["rounding"].copy()
        rnd_num = rnd[rnd["decimals"].astype(str) != "all"].assign(decimals=lambda t: t["decimals"].astype(int))
        km, fk = r["kmeans"], r["filter_kmeans"]
        if "bn" not in fk.columns:
            fk = fk.assign(bn="original")
        knee = noise[noise.index <= 0.6]
        rows[ds] = {
            "base_acc": base, "test_images": r["meta"]["test_images"],
            "conv_share": 100 * body.loc[body["kind"] == "conv", "params"].sum() / params.loc["total", "params"],
            "conv_std": kind.loc["conv", "std"], "fc_std": kind.loc["fc", "std"] if "fc" in kind.index else np.nan,
            "fc_skew_first": fc["skewness"].iloc[0] if len(fc) else np.nan,
            "fc_skew_last": fc["skewness"].iloc[-1] if len(fc) else np.nan,
            "pca_first_half": half["alpha"].iloc[0],
            "pca_depth_corr": pd.Series(depth.to_numpy()).corr(pd.Series(half["alpha"].to_numpy()),
                                                              method="spearman"),
            "sparsity_conv": relu.loc[kinds == "conv", "sparsity"].mean(),
            "sparsity_fc": relu.loc[kinds == "fc", "sparsity"].mean(),
            "noise10_drop": pts(noise.get(0.1, np.nan)),
            "noise_tolerance": _smallest_tolerance(noise, base, tolerance),
            "noise_knee_p": knee.index.max(), "noise_knee_drop": pts(knee.iloc[-1]),
            "layer_noise_p": r["layer_noise"]["p"].max(),
            "layer_most": ln.idxmin(), "layer_most_drop": pts(ln.min()),
            "layer_least": ln.idxmax(), "layer_least_drop": pts(ln.max()),
            "decimals_needed": _smallest(rnd_num, "decimals", pts(rnd_num["acc"]) <= tolerance + 1e-9),
            "decimals2_drop": pts(rnd_num.set_index("decimals")["acc"].get(2, np.nan)),
            "k_needed": _smallest(km, "k", pts(km["acc"]) <= tolerance + 1e-9),
            "k32_drop": pts(km.set_index("k")["acc"].get(32, np.nan)),
            **_clusters_needed(fk, pts, tolerance),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def _clusters_needed(fk: pd.DataFrame, pts, tolerance: float) -> dict:
    """Smallest filter-cluster count within tolerance, and its share of filters, per BN mode."""
    out = {}
    for mode, suffix in (("original", ""), ("recalibrated", "_recal")):
        d = fk[fk["bn"] == mode]
        c = _smallest(d, "clusters", pts(d["acc"]) <= tolerance + 1e-9) if len(d) else None
        out["clusters_needed" + suffix] = c
        out["clusters_share" + suffix] = d.set_index("clusters")["filter_share"].get(c, np.nan) if c else np.nan
    return out


def _smallest_tolerance(noise: pd.Series, base: float, tolerance: float) -> float:
    """Largest swept strength p such that it and every weaker one lose <= tolerance points."""
    ok = 100 * (base - noise) <= tolerance + 1e-9   # 1e-9: 71% - 70% is 1.0000000000000009 points
    bad = ok[~ok]
    return float(noise.index.max() if bad.empty else max([p for p in noise.index if p < bad.index.min()],
                                                         default=0.0))


def verdicts(f: pd.DataFrame, tolerance: float = 1.0) -> dict:
    """One markdown sentence per observation of the paper, true for whatever numbers ``f`` holds.

    Args:
        f: :func:`findings` output.
        tolerance: the points of accuracy that count as "unaffected" (as in findings).

    Returns:
        dict observation -> markdown string (glue them with ``IPython.display.Markdown``).
    """
    def each(fmt, col):
        vals = [fmt(v) for v in (f[col] if isinstance(col, str) else col)]
        if len(vals) > 1 and len(set(vals)) == 1:
            return f"{vals[0]} for every data set"
        return ", ".join(f"{ds}: {v}" for ds, v in zip(f.index, vals))

    def share(cond, yes, some, no):
        n = int(cond.sum())
        return yes if n == len(cond) else (no if n == 0 else some)

    def holds(cond, claim):
        return share(cond, f"The paper's {claim} holds.", f"The paper's {claim} holds for some data sets only.",
                     f"The paper's {claim} does not hold here.")

    pts = lambda v: f"{v:+.1f} points" if pd.notna(v) else "n/a"  # noqa: E731
    pct = lambda v: f"{100 * v:.0f}%"  # noqa: E731
    out = {}
    out["params"] = (f"Share of the parameters in conv layers: {each(lambda v: f'{v:.1f}%', 'conv_share')}. "
                     + share(f["conv_share"] < 4, "As in AlexNet, the convs hold under 4%.",
                             "Only some of our models have AlexNet's under 4% in the convs.",
                             "Not AlexNet's under 4%: at 32 or 64 px our VGG16-BN has a 512-wide head "
                             "instead of two 4096-wide layers, so most parameters sit in the convs."))
    out["std"] = (f"Standard deviation of conv vs fc parameters: "
                  + ", ".join(f"{ds}: {r.conv_std:.2e} vs {r.fc_std:.2e}" for ds, r in f.iterrows()) + ". "
                  + share(f["conv_std"] > f["fc_std"], "As in AlexNet (1.69e-2 vs 5.68e-3), the conv "
                          "parameters are the more spread.", "AlexNet's order (conv more spread than fc) "
                          "holds for some data sets only.", "Unlike AlexNet (1.69e-2 vs 5.68e-3), the fc "
                          "parameters are at least as spread as the conv ones."))
    out["skew"] = (f"Skewness of the first vs last fc layer: "
                   + ", ".join(f"{ds}: {r.fc_skew_first:.2f} vs {r.fc_skew_last:.2f}" for ds, r in f.iterrows())
                   + ". " + share(f["fc_skew_last"] > f["fc_skew_first"], "The skewness grows towards the "
                                  "output, as the paper saw from fc6 to fc8.", "The paper's growth of skewness "
                                  "towards the output shows for some data sets only.", "The skewness does not "
                                  "grow towards the output, unlike the paper's fc6 to fc8."))
    out["pca"] = (f"Spearman correlation between a conv layer's depth and the variance its first half "
                  f"of components explains: {each(lambda v: f'{v:.2f}', 'pca_depth_corr')}; first layer: "
                  f"{each(pct, 'pca_first_half')} with half of its components. "
                  + share(f["pca_depth_corr"] <= -0.5, "The curves flatten with depth, as the paper found: "
                          "deeper filters are less correlated.", "The curves flatten with depth for some "
                          "data sets only.", "The curves do not clearly flatten with depth, unlike the paper's."))
    out["sparsity"] = (f"Mean share of zeros after the conv ReLUs: {each(pct, 'sparsity_conv')}; after the "
                       f"fc ReLUs: {each(pct, 'sparsity_fc')}. "
                       + share(f["sparsity_fc"] > 0.8, "As in the paper, the fc features are over 80% sparse.",
                               "The paper's over-80% fc sparsity holds for some data sets only.",
                               "The fc features are less sparse than the paper's over 80%."))
    out["noise"] = (f"Noise of 10% of each layer's std changes the accuracy by "
                    f"{each(lambda v: pts(-v), 'noise10_drop')}; the largest strength costing at most "
                    f"{tolerance:g} point is {each(pct, 'noise_tolerance')}. "
                    + holds(f["noise10_drop"] <= tolerance, "~10% noise tolerance"))
    out["layer_noise"] = ("Noise in one layer alone (at "
                          + each(pct, "layer_noise_p") + "): the most sensitive layer is "
                          + ", ".join(f"{ds}: {r.layer_most} ({pts(-r.layer_most_drop)})" for ds, r in f.iterrows())
                          + "; the least, " + ", ".join(f"{ds}: {r.layer_least} ({pts(-r.layer_least_drop)})"
                                                        for ds, r in f.iterrows()) + ".")
    dec = lambda v: "none of the swept" if v is None or pd.isna(v) else f"{int(v)}"  # noqa: E731
    pct = lambda v: "n/a" if pd.isna(v) else f"{100 * v:.0f}%"  # noqa: E731
    out["rounding"] = (f"Fewest decimals that cost at most {tolerance:g} point: {each(dec, 'decimals_needed')} "
                       f"(the paper: 4, with 3 costing 0.19 points). "
                       + share(f["decimals_needed"].fillna(99) <= 4, "Four decimals are enough here too, as in the paper.",
                               "Four decimals are enough for some data sets only.",
                               "Four decimals are not enough here."))
    k_text = (f"Smallest codebook K within {tolerance:g} point of the unquantised network (and for every larger "
              f"K): {each(dec, 'k_needed')}; K=32 changes the accuracy by {each(lambda v: pts(-v), 'k32_drop')}. ")
    out["kmeans"] = k_text + holds(f["k32_drop"] <= tolerance, "K=32 sufficiency")
    def clusters(suffix):
        # "k (x% of the filters kept distinct)" per data set; a value, not a sentence part, so that
        # each()'s "... for every data set" reads right after the colon.
        return each(lambda v: "more than any swept" if v[0] is None or pd.isna(v[0]) else
                    f"{int(v[0])} ({100 * v[1]:.0f}% of the filters kept distinct on average)",
                    list(zip(f["clusters_needed" + suffix], f["clusters_share" + suffix])))

    out["filter_kmeans"] = (f"Clusters per conv layer that filter k-means needs to stay within {tolerance:g} "
                            f"point: {clusters('')}"
                            + (f"; with the BN statistics re-estimated afterwards: {clusters('_recal')}"
                               if "clusters_needed_recal" in f else "") + ". "
                            + share(f["clusters_share"].fillna(1) >= 0.5, "As in the paper, vector quantisation "
                                    "of filters needs many clusters.", "Many clusters are needed for some data "
                                    "sets only.", "Unlike in the paper, few clusters suffice."))
    return out
