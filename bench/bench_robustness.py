"""Robustness of image matching to the edits PDQ misses: PDQ alone against Bastion (PDQ + the ORB signal), same run.

Photos: the real photographs shipped by Debian's wallpaper packages (``apt-get install mate-backgrounds
lomiri-wallpapers-16.04 lomiri-wallpapers-20.04``; illustrations and patterns are left out by name). Each photo is
split in two: its left 60 % is cut into non-overlapping tiles that make the bank (480 x 360; tiles too flat
for either signal, PDQ quality < 50 or fewer than 64 ORB keypoints, are dropped and counted), its right 40 % gives
the unrelated images (random crops of random size and shape, none overlapping a bank tile). Neighbouring tiles of one
photo share its textures and light, which makes the false-match test harder than unrelated photos would.

(a) Recall per edit family (``bastion.samples.edits``: caption/logo 5-25 %, crop 5-15 % a side, border or meme
    padding 5-30 %, rotation 3-10 degrees, phone screenshot, picture-in-picture, resize + re-encode): an edited copy
    is found when its own bank tile matches; PDQ is counted with its 8 dihedral variants within 31 bits, ORB through
    the ORB index (the matcher's code) with the default radius and inlier threshold.
(b) False matches: every unrelated image queried against the whole bank, PDQ and ORB.
(c) Cost per image, one core: ``ORBSignal.compute`` against ``PDQSignal.compute`` on the same edited files (median
    ratio), and the ORB index query time.
(d) Index scale: the bank's real descriptors copied with 8 random bit flips each up to ``--scale`` pictures;
    query time and memory, extrapolated linearly to 1M pictures.

    .venv/bin/python bench/bench_robustness.py                  # ~250 bank tiles, 5,000 unrelated, scale 20,000
    .venv/bin/python bench/bench_robustness.py --quick          # 60 tiles, 500 unrelated, scale 5,000
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bastion.content import Content
from bastion.matching.orb_index import ORBIndex
from bastion.samples import edits
from bastion.settings import get_settings
from bastion.signals import orb
from bastion.signals.pdq import PDQSignal, hamming

BACKGROUNDS = Path("/usr/share/backgrounds")
#: photographs (not illustrations) in Debian's mate-backgrounds and lomiri-wallpapers-16.04/-20.04
PHOTOS = [
    "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Kleiber_by_Lukas_Baubkus.jpg",
    "Picture_0B_by_freespace.jpg", "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg",
    "aitzgorri_by_Aitzol_Berasategi.jpg", "analogpattern_by_Peter_Nerlich.jpg", "free_by_Peter_Nerlich.jpg",
    "friends_by_Aitzol_Berasategi.jpg", "greentock_by_Peter_Nerlich.jpg", "life_by_Aitzol_Berasategi.jpg",
    "picosdeeuropa_by_Aitzol_Berasategi.jpg", "seeding_by_Clements_Engelhardt.jpg",
    "sunset_by_Aitzol_Berasategi.jpg", "mate/nature/Aqua.jpg", "mate/nature/Blinds.jpg", "mate/nature/Dune.jpg",
    "mate/nature/FreshFlower.jpg", "mate/nature/Garden.jpg", "mate/nature/GreenMeadow.jpg",
    "mate/nature/LadyBird.jpg", "mate/nature/RainDrops.jpg", "mate/nature/Storm.jpg", "mate/nature/TwoWings.jpg",
    "mate/nature/Wood.jpg", "mate/nature/YellowFlower.jpg",
]  # fmt: skip
TILE_W, TILE_H = 480, 360
BANK_SHARE = 0.6


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def load_photos() -> list[Image.Image]:
    found = [BACKGROUNDS / p for p in PHOTOS if (BACKGROUNDS / p).exists()]
    if len(found) < 10:
        raise SystemExit(
            "needs the photos of Debian's wallpaper packages: "
            "apt-get install mate-backgrounds lomiri-wallpapers-16.04 lomiri-wallpapers-20.04"
        )
    photos = []
    for path in found:
        img = Image.open(path)
        img.draft("RGB", (3000, 3000))
        img = img.convert("RGB")
        if max(img.size) > 3200:
            img.thumbnail((3200, 3200), Image.Resampling.LANCZOS)
        photos.append(img)
    return photos


def bank_tiles(photos: list[Image.Image], step: float) -> list[bytes]:
    """Non-overlapping 4:3 tiles of each photo's left part; ``step`` scales the photo before tiling (more tiles)."""
    out = []
    for img in photos:
        w, h = img.size
        s = min(1.0, step)
        zone = img.crop((0, 0, int(w * BANK_SHARE), h))
        zone = zone.resize((max(1, int(zone.width * s)), max(1, int(zone.height * s))), Image.Resampling.LANCZOS)
        for y in range(0, zone.height - TILE_H + 1, TILE_H):
            for x in range(0, zone.width - TILE_W + 1, TILE_W):
                out.append(jpeg(zone.crop((x, y, x + TILE_W, y + TILE_H))))
    return out


def unrelated(photos: list[Image.Image], n: int, rng: np.random.Generator) -> list[bytes]:
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        w, h = img.size
        x_min = int(w * BANK_SHARE) + 1
        cw = int(rng.uniform(0.25, 1.0) * (w - x_min))
        ch = int(min(h, cw * rng.choice([0.56, 0.75, 1.0, 1.33, 1.78])))
        x = int(rng.integers(x_min, w - cw + 1))
        y = int(rng.integers(0, h - ch + 1))
        crop = img.crop((x, y, x + cw, y + ch))
        side = int(rng.integers(400, 1100))
        crop.thumbnail((side, side), Image.Resampling.BILINEAR)
        out.append(jpeg(crop, int(rng.integers(70, 95))))
    return out


def pdq_of(data: bytes) -> tuple[str, int, list[str]]:
    (sig,) = PDQSignal.compute(Content.from_bytes(data))
    return sig.value, sig.quality or 0, list(sig.meta["_variants"].values())


def orb_of(data: bytes) -> orb.Keypoints | None:
    sigs = orb.ORBSignal.compute(Content.from_bytes(data))
    return sigs[0].meta["_query"] if sigs and orb.ORBSignal.usable(sigs[0]) else None


def pdq_matches(variants: list[str], bank_pdq: list[str], threshold: int) -> set[int]:
    return {i for i, b in enumerate(bank_pdq) if min(hamming(v, b) for v in variants) <= threshold}


def timed(fn, data: bytes):
    t = time.perf_counter()
    out = fn(data)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--unrelated", type=int, default=5000)
    ap.add_argument("--scale", type=int, default=20_000, help="pictures in the index-scale test (d)")
    ap.add_argument("--parts", default="abcd", help="which parts to run (a b c d); c without a times a sample")
    ap.add_argument("--families", default=",".join(edits.FAMILIES), help="edit families for (a), comma-separated")
    ap.add_argument("--tile-scale", type=float, default=1.0, help="photos are scaled by this before tiling")
    args = ap.parse_args()
    if args.quick:
        args.unrelated, args.scale = 500, 5000
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    settings = get_settings()
    radius, min_inliers = settings.orb_descriptor_radius, settings.orb_min_inliers
    rng = np.random.default_rng(7)
    photos = load_photos()
    tiles = bank_tiles(photos, args.tile_scale)
    if args.quick:
        tiles = tiles[:: max(1, len(tiles) // 60)][:60]
    print(
        f"{len(photos)} photos -> {len(tiles)} bank tiles {TILE_W}x{TILE_H};",
        platform.processor() or platform.machine(),
    )

    bank_pdq, bank_orb, kept = [], [], []
    index = ORBIndex()
    flat = 0
    for data in tiles:
        value, quality, _ = pdq_of(data)
        kp = orb_of(data)
        if quality < settings.pdq_min_quality or kp is None:
            flat += 1
            continue
        bank_pdq.append(value)
        index.add(len(kept), kp.head(orb.BANK_KEYPOINTS))
        bank_orb.append(kp.head(orb.BANK_KEYPOINTS))
        kept.append(data)
    print(f"bank: {len(kept)} tiles ({flat} too flat for PDQ quality 50 or 64 ORB keypoints, dropped)")
    others = unrelated(photos, args.unrelated, rng)

    families = {name: edits.FAMILIES[name] for name in args.families.split(",")}
    cost_pdq, cost_orb, cost_query = [], [], []
    if "a" in args.parts:
        recall(kept, others, index, bank_pdq, families, cost_pdq, cost_orb, cost_query)
    if "b" in args.parts:
        false_matches(others, index, bank_pdq, len(kept))
    if "c" in args.parts:
        if not cost_pdq:  # (a) not run: time the edits of a sample
            for i, data in enumerate(kept[:40]):
                for name, edit in families.items():
                    if name != "picture_in_picture":
                        edited = jpeg(edit(Image.open(io.BytesIO(data)), np.random.default_rng(i)), 88)
                        cost_pdq.append(timed(pdq_of, edited)[1])
                        kp, took = timed(orb_of, edited)
                        cost_orb.append(took)
                        t = time.perf_counter()
                        index.query(kp, radius, min_inliers) if kp is not None else None
                        cost_query.append(time.perf_counter() - t)
        cost(cost_pdq, cost_orb, cost_query, len(kept))
    if "d" in args.parts:
        scale(bank_orb, others, args.scale)


def recall(kept, others, index, bank_pdq, families, cost_pdq, cost_orb, cost_query) -> None:
    settings = get_settings()
    radius, min_inliers, pdq_t = settings.orb_descriptor_radius, settings.orb_min_inliers, settings.pdq_match_threshold
    print(f"\n(a) recall, {len(kept)} bank tiles per family (PDQ: 8 variants <= {pdq_t} bits; ORB: radius {radius},"
          f" >= {min_inliers} inliers)")  # fmt: skip
    print(f"{'family':20s} {'PDQ alone':>10s} {'ORB alone':>10s} {'Bastion':>10s} {'ORB inliers p5/median':>22s}")
    for family, edit in families.items():
        found_pdq = found_orb = found_any = 0
        inliers = []
        for i, data in enumerate(kept):
            r = np.random.default_rng(1000 * i + len(family))
            img = Image.open(io.BytesIO(data))
            if family == "picture_in_picture":
                bg = Image.open(io.BytesIO(others[i % len(others)]))
                edited = jpeg(edit(img, r, bg), 88)  # type: ignore[call-arg]
            else:
                edited = jpeg(edit(img, r), 88)
            (_, _, variants), took_pdq = timed(pdq_of, edited)
            kp, took_orb = timed(orb_of, edited)
            cost_pdq.append(took_pdq)
            cost_orb.append(took_orb)
            hit_pdq = i in pdq_matches(variants, bank_pdq, pdq_t)
            t = time.perf_counter()
            found = dict(index.query(kp, radius, min_inliers)) if kp is not None else {}
            cost_query.append(time.perf_counter() - t)
            hit_orb = i in found
            inliers.append(found[i].inliers if hit_orb else 0)
            found_pdq += hit_pdq
            found_orb += hit_orb
            found_any += hit_pdq or hit_orb
        n = len(kept)
        p5, med = np.percentile(inliers, 5), np.median(inliers)
        print(
            f"{family:20s} {found_pdq / n:10.1%} {found_orb / n:10.1%} {found_any / n:10.1%} {p5:10.0f} / {med:<9.0f}"
        )


def false_matches(others, index, bank_pdq, n_bank) -> None:
    settings = get_settings()
    radius, min_inliers, pdq_t = settings.orb_descriptor_radius, settings.orb_min_inliers, settings.pdq_match_threshold
    false_pdq = false_orb = 0
    worst = 0
    for data in others:
        _, quality, variants = pdq_of(data)
        if quality >= settings.pdq_min_quality:
            false_pdq += bool(pdq_matches(variants, bank_pdq, pdq_t))
        kp = orb_of(data)
        if kp is not None:  # queried with a loose threshold to see how close chance comes
            inliers = [v.inliers for _, v in index.query(kp, radius, 4)]
            false_orb += any(n >= min_inliers for n in inliers)
            worst = max([worst, *inliers])
    print(f"\n(b) false matches: {len(others)} unrelated images x {n_bank} bank tiles: PDQ {false_pdq}, ORB "
          f"{false_orb} (most inliers with any bank tile: {worst}; the threshold is {min_inliers})")  # fmt: skip


def cost(cost_pdq, cost_orb, cost_query, n_bank) -> None:
    ratios = [o / p for o, p in zip(cost_orb, cost_pdq, strict=True)]
    print(f"\n(c) cost per edited image, one core, median of {len(ratios)}: PDQ {statistics.median(cost_pdq) * 1e3:.1f}"
          f" ms, ORB {statistics.median(cost_orb) * 1e3:.1f} ms, ratio ORB/PDQ median {statistics.median(ratios):.2f};"
          f" ORB index query ({n_bank} pictures) median {statistics.median(cost_query) * 1e3:.1f} ms")  # fmt: skip


def scale(bank_orb, others, n_pictures) -> None:
    settings = get_settings()
    radius, min_inliers = settings.orb_descriptor_radius, settings.orb_min_inliers
    big = ORBIndex()
    flips = np.random.default_rng(3)
    t = time.perf_counter()
    batch = []
    for pic in range(n_pictures):
        src = bank_orb[pic % len(bank_orb)]
        desc = src.descriptors.copy()
        bits = flips.integers(0, 256, (len(desc), 8))
        np.bitwise_xor.at(desc, (np.arange(len(desc))[:, None], bits // 8), (1 << (bits % 8)).astype(np.uint8))
        batch.append((pic, orb.Keypoints(src.width, src.height, src.points, desc)))
    rows = np.concatenate([(np.int64(p) << 10) | np.arange(len(k), dtype=np.int64) for p, k in batch])
    big.descriptors.add(rows, np.concatenate([k.descriptors for _, k in batch]))
    big.keypoints = {p: orb.Keypoints(k.width, k.height, k.points, k.descriptors[:0]) for p, k in batch}
    build = time.perf_counter() - t
    times = []
    for data in others[:100]:
        kp = orb_of(data)
        if kp is None:
            continue
        t = time.perf_counter()
        big.query(kp, radius, min_inliers)
        times.append(time.perf_counter() - t)
    mem = big.memory_bytes
    med = statistics.median(times)
    per_m = 1_000_000 / n_pictures
    print(f"\n(d) index of {n_pictures:,} pictures ({len(rows):,} descriptors), built in {build:.0f} s: query median "
          f"{med * 1e3:.1f} ms (1,000 keypoints, radius {radius}); {mem / 2**30:.2f} GiB. Linear extrapolation to 1M "
          f"pictures: ~{med * per_m * 1e3:.0f} ms a query at most, ~{mem * per_m / 2**30:.0f} GiB")  # fmt: skip


if __name__ == "__main__":
    main()
