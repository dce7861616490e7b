#!/usr/bin/env python3
"""Check that built book pages show their figures: count <img> tags, screenshot, check not blank.

Jupyter Book can build a page whose figures are missing (an output dropped, a
widget that renders as nothing offline) without any warning. This script looks at
the built HTML the way a reader does:

1. counts the page's ``<img>`` tags and checks that each local image file exists
   and is not empty;
2. renders the page with headless Chromium (Debian: ``apt-get install -y chromium``)
   into a PNG;
3. checks that the PNG is not blank: enough pixels differ from the page's
   background colour, and some are coloured (plots), not only text.

Usage::

    jupyter-book build -W book/
    python tools/check_book_render.py                                  # results.html, claims.html
    python tools/check_book_render.py book/_build/html/explorer.html --out /tmp/shots

Exit status 0 when every page passes, 1 when one fails, 2 for bad input
(missing build, no Chromium).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


class _Images(HTMLParser):
    """The ``src`` of every <img> inside the page's main article (the whole page if none)."""

    def __init__(self):
        super().__init__()
        self.all: list[str] = []
        self.main: list[str] = []
        self._depth = 0   # > 0 while inside <main>

    def handle_starttag(self, tag, attrs):
        if tag == "main":
            self._depth += 1
        if tag == "img":
            src = dict(attrs).get("src") or ""
            self.all.append(src)
            if self._depth:
                self.main.append(src)

    def handle_endtag(self, tag):
        if tag == "main" and self._depth:
            self._depth -= 1


def page_images(page: Path) -> list[str]:
    """The image sources of a built page's content (logos and the like outside <main> excluded)."""
    p = _Images()
    p.feed(page.read_text(encoding="utf-8", errors="replace"))
    return p.main if p.main else p.all


def missing_images(page: Path, sources: list[str]) -> list[str]:
    """Local image sources that do not exist or are empty files (data: and http: sources are skipped)."""
    bad = []
    for src in sources:
        u = urlparse(src)
        if u.scheme in ("data", "http", "https") or not u.path:
            continue
        f = (page.parent / unquote(u.path)).resolve()
        if not f.is_file() or f.stat().st_size == 0:
            bad.append(src)
    return bad


def find_chromium(name: str | None = None) -> str:
    for cand in ([name] if name else ["chromium", "chromium-browser", "google-chrome", "chrome"]):
        path = shutil.which(cand) if cand else None
        if path:
            return path
    raise FileNotFoundError("no Chromium found; install it (Debian: apt-get install -y chromium) "
                            "or pass --chromium PATH")


def screenshot(page: Path, out: Path, chromium: str, size=(1200, 3000), timeout: float = 120) -> Path:
    """Render ``page`` with headless Chromium into ``out`` (PNG); a fresh profile each time."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}",
               f"--window-size={size[0]},{size[1]}", page.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not out.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"Chromium wrote no screenshot (exit {proc.returncode}): " + " | ".join(tail))
    return out


def blankness(png: Path) -> dict:
    """Share of pixels unlike the background (its most common colour) and share of coloured pixels."""
    import matplotlib.image as mpimg
    import numpy as np
    img = mpimg.imread(png)[..., :3]
    if img.dtype != np.uint8:
        img = (img * 255).round().astype(np.uint8)
    flat = img.reshape(-1, 3)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    bg = colours[counts.argmax()]
    differs = np.abs(flat.astype(int) - bg.astype(int)).max(axis=1) > 24
    sat = flat.max(axis=1).astype(int) - flat.min(axis=1).astype(int)
    return {"height": img.shape[0], "width": img.shape[1], "non_background": float(differs.mean()),
            "coloured": float((sat > 60).mean()), "std": float(flat.std())}


def check_page(page: Path, out_dir: Path, chromium: str, min_images: int, min_content: float,
               min_colour: float, size) -> bool:
    sources = page_images(page)
    bad = missing_images(page, sources)
    png = screenshot(page, out_dir / (page.stem + ".png"), chromium, size)
    stats = blankness(png)
    ok = len(sources) >= min_images and not bad and stats["non_background"] >= min_content \
        and stats["coloured"] >= min_colour
    print(f"{'PASS' if ok else 'FAIL'} {page.name}: {len(sources)} <img> (need {min_images}), "
          f"{len(bad)} missing; screenshot {png} {stats['width']}x{stats['height']}: "
          f"{100 * stats['non_background']:.1f}% non-background (need {100 * min_content:.1f}%), "
          f"{100 * stats['coloured']:.2f}% coloured (need {100 * min_colour:.2f}%)")
    for src in bad:
        print(f"  missing image: {src}")
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html", nargs="*", help="built pages to check, e.g. book/_build/html/results.html "
                                            "(default: --page under --build)")
    ap.add_argument("--build", default=str(REPO / "book" / "_build" / "html"),
                    help="the built HTML folder (default: book/_build/html)")
    ap.add_argument("--page", nargs="+", default=["results.html", "claims.html"],
                    help="pages relative to --build (default: results.html claims.html)")
    ap.add_argument("--min-images", type=int, default=3, help="least <img> per page (default 3)")
    ap.add_argument("--min-content", type=float, default=0.03,
                    help="least share of non-background pixels in the screenshot (default 0.03)")
    ap.add_argument("--min-colour", type=float, default=0.002,
                    help="least share of coloured pixels (plots) in the screenshot (default 0.002)")
    ap.add_argument("--size", default="1200,3000", help="window WIDTH,HEIGHT (default 1200,3000)")
    ap.add_argument("--out", default=None, help="folder for the screenshots (default: a temporary folder)")
    ap.add_argument("--chromium", default=None, help="the browser binary (default: chromium on PATH)")
    args = ap.parse_args(argv)
    build = Path(args.build)
    pages = [Path(p) for p in args.html] if args.html else [build / p for p in args.page]
    missing = [p for p in pages if not p.is_file()]
    if missing:
        print(f"check_book_render: no built page {missing[0]}; run `jupyter-book build -W book/` first",
              file=sys.stderr)
        return 2
    try:
        chromium = find_chromium(args.chromium)
        size = tuple(int(v) for v in args.size.split(","))
        if len(size) != 2:
            raise ValueError
    except FileNotFoundError as e:
        print(f"check_book_render: {e}", file=sys.stderr)
        return 2
    except ValueError:
        print(f"check_book_render: --size takes WIDTH,HEIGHT, got {args.size!r}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="book-render-"))
    out.mkdir(parents=True, exist_ok=True)
    ok = True
    for page in pages:
        try:
            ok &= check_page(page, out, chromium, args.min_images, args.min_content, args.min_colour, size)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print(f"FAIL {page.name}: {e}")
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
