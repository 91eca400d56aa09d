"""Hashing speed per core: Bastion's PDQ and vPDQ against Meta's reference implementations, same run, same files.

(a) PDQ on generated 1024x768 JPEGs (quality 85-92, half of them with sharp lines and text drawn on): Bastion
    (``PDQSignal.compute``: reduced JPEG decode, 8 dihedral hashes) against the baseline ``pdqhash.compute`` on the
    fully decoded RGB image (one hash). Images per second, median over rounds; and how far Bastion's hashes are from
    the baseline's on quality >= 80 images (the correctness criterion: <= 10 bits).
(b) vPDQ on generated 640x360 videos: Bastion (``VPDQSignal.compute``) against the ``vpdq`` package's
    ``computeHash(thread_count=1)``. Seconds of video hashed per second, median over rounds; plus frame-hash
    agreement. Rows: libx264 at x264's default "medium" preset (B-frames, long GOP; the headline), the same with a
    1-second GOP (common for phone and streaming video), and FFmpeg's mpeg4 (12-frame GOP, no B-frames).
(c) TMK+PDQF when tmkpy and the ffmpeg binary are there: Bastion (PyAV in-process) against ``tmkpy.hashVideo``.

Everything runs pinned to one CPU (``sched_setaffinity``, inherited by ffmpeg children), so the numbers are per core.

    .venv/bin/python bench/bench_hashing.py          # 60 images x 5 rounds; 10/20/30 s videos x 3 kinds x 3 rounds
    .venv/bin/python bench/bench_hashing.py --quick  # 20 images; two 10 s h264 videos; 3 rounds
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import pdqhash
from PIL import Image, ImageDraw

from bastion.content import Content
from bastion.samples import encode, generate_image, generate_video
from bastion.signals import tmk
from bastion.signals.pdq import PDQSignal, hamming
from bastion.signals.vpdq import Frame, VPDQSignal, match_percent, parse


def reference_pdq(data: bytes) -> tuple[str, int]:
    bits, quality = pdqhash.compute(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    return np.packbits(bits.astype(np.uint8)).tobytes().hex(), int(quality)


def bastion_pdq(data: bytes) -> tuple[str, int]:
    (signal,) = PDQSignal.compute(Content.from_bytes(data))
    return signal.value, signal.quality


def make_images(n: int) -> list[bytes]:
    out = []
    for seed in range(n):
        img = generate_image(1000 + seed, 1024, 768)
        if seed % 2:
            rng = np.random.default_rng(seed)
            draw = ImageDraw.Draw(img)
            for _ in range(30):
                x, y = int(rng.integers(0, 1024)), int(rng.integers(0, 768))
                colour = tuple(int(v) for v in rng.integers(0, 256, 3))
                draw.rectangle([x, y, x + int(rng.integers(4, 200)), y + int(rng.integers(4, 150))], outline=colour)
                draw.text((int(rng.integers(0, 1000)), int(rng.integers(0, 760))), "timetable 0630", fill=colour)
        out.append(encode(img, "JPEG", quality=85 + seed % 8))
    return out


def timed(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return time.perf_counter() - start


def bench_images(n: int, rounds: int) -> None:
    images = make_images(n)
    ours_rates, ref_rates = [], []
    for r in range(rounds):
        order = [(bastion_pdq, ours_rates), (reference_pdq, ref_rates)]
        for fn, rates in order if r % 2 == 0 else order[::-1]:
            rates.append(n / timed(fn, images))
    pairs = [(bastion_pdq(d), reference_pdq(d)) for d in images]
    dist = [hamming(o[0], ref[0]) for o, ref in pairs if ref[1] >= 80]
    ours, ref = statistics.median(ours_rates), statistics.median(ref_rates)
    print(f"\n(a) PDQ, {n} generated 1024x768 JPEGs (q 85-92), {rounds} rounds, 1 core")
    print("| hasher | images/s (median) | ms/image |")
    print("|---|---:|---:|")
    print(f"| baseline: pdqhash.compute on the full decode (1 hash) | {ref:.1f} | {1000 / ref:.2f} |")
    print(f"| Bastion PDQSignal.compute (8 dihedral hashes) | {ours:.1f} | {1000 / ours:.2f} |")
    print(f"| ratio | {ours / ref:.2f}x | |")
    print(
        f"\nbits from the baseline on quality >= 80 ({len(dist)} of {n} images): "
        f"max {max(dist)}, median {statistics.median(dist):g}, mean {statistics.mean(dist):.2f}"
    )


VIDEO_SETS = {
    # label: (codec, encoder options); libx264 "medium" is x264's default (3 B-frames, GOP up to 250 frames)
    "h264 medium": ("libx264", {"preset": "medium"}),
    "h264 medium, 1 s GOP": ("libx264", {"preset": "medium", "x264-params": "keyint=30:min-keyint=30"}),
    "mpeg4 (FFmpeg defaults)": ("mpeg4", {}),
}


def bench_videos(lengths: list[int], sets: list[str], rounds: int, tmp: Path) -> list[Path]:
    try:
        import vpdq
    except ImportError:
        vpdq = None
        print("\n(b) vPDQ baseline skipped: the vpdq package is not installed (pip install 'bastion[video]')")

    def ours(path: Path):
        return VPDQSignal.compute(Content.from_path(path))[0].value

    def reference(path: Path):
        return vpdq.computeHash(str(path), seconds_per_hash=1.0, thread_count=1)

    total = float(sum(lengths))
    print(
        f"\n(b) vPDQ, 640x360 30 fps generated videos of {', '.join(f'{s} s' for s in lengths)} per row, "
        f"{rounds} rounds, 1 core; seconds of video hashed per second (median)"
    )
    print("| videos | baseline: vpdq.computeHash(thread_count=1) | Bastion VPDQSignal.compute | ratio |")
    print("|---|---:|---:|---:|")
    first: list[Path] = []
    dist, pcts = [], []
    for label in sets:
        codec, options = VIDEO_SETS[label]
        if codec not in av.codecs_available:
            print(f"| {label}: {codec} not in this PyAV | | | |")
            continue
        paths = []
        for i, seconds in enumerate(lengths):
            path = tmp / f"{codec}-{len(first)}-{i}.mp4"
            generate_video(path, seconds, 30, (640, 360), seed=50 + i, scene_seconds=3.0, codec=codec, options=options)
            paths.append(path)
        first = first or paths
        ours_rates, ref_rates = [], []
        for r in range(rounds):
            order = [(ours, ours_rates)] + ([(reference, ref_rates)] if vpdq else [])
            for fn, rates in order if r % 2 == 0 else order[::-1]:
                rates.append(total / timed(fn, paths))
        mine = statistics.median(ours_rates)
        if vpdq:
            theirs = statistics.median(ref_rates)
            print(f"| {label} | {theirs:.1f} | {mine:.1f} | {mine / theirs:.2f}x |")
            for path in paths:
                got = parse(ours(path))
                want = [Frame(f.hex, f.quality, f.timestamp) for f in reference(path)]
                dist += [hamming(a.pdq, b.pdq) for a, b in zip(got, want, strict=True) if b.quality >= 80]
                pcts += [*match_percent(got, want), *match_percent(want, got)]
        else:
            print(f"| {label} | - | {mine:.1f} | - |")
    if dist:
        print(
            f"\nframe hashes vs vpdq on quality >= 80 frames ({len(dist)}): max {max(dist)} bits, "
            f"median {statistics.median(dist):g}; match percentages both ways: min {min(pcts):.0f}%"
        )
    return first


def bench_tmk(paths: list[Path], rounds: int) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if not tmk.available() or not ffmpeg:
        print("\n(c) TMK skipped: needs tmkpy and the ffmpeg binary for the reference")
        return
    import tmkpy

    total = 0.0
    for p in paths:
        with av.open(str(p)) as container:
            total += container.duration / 1e6
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(2)
    ours_rates, ref_rates = [], []
    try:
        os.dup2(devnull, 2)  # ffmpeg's progress lines
        for r in range(rounds):
            order = [
                (lambda p: tmk.hash_video(Content.from_path(p)), ours_rates),
                (lambda p: tmkpy.hashVideo(str(p), ffmpeg), ref_rates),
            ]
            for fn, rates in order if r % 2 == 0 else order[::-1]:
                rates.append(total / timed(fn, paths))
        ours_sig = tmk.hash_video(Content.from_path(paths[0])).to_tmkpy()
        ref_sig = tmkpy.hashVideo(str(paths[0]), ffmpeg)
    finally:
        os.dup2(saved, 2)
    level1 = tmkpy.TMKFeatureVectors.computeLevel1Score(ours_sig, ref_sig)
    level2 = tmkpy.TMKFeatureVectors.computeLevel2Score(ours_sig, ref_sig)
    print(f"\n(c) TMK+PDQF, same videos, {rounds} rounds, 1 core")
    print("| hasher | seconds of video / s (median) |")
    print("|---|---:|")
    print(f"| baseline: tmkpy.hashVideo (ffmpeg binary in a pipe) | {statistics.median(ref_rates):.1f} |")
    print(f"| Bastion tmk.hash_video (PyAV in-process) | {statistics.median(ours_rates):.1f} |")
    print(f"| ratio | {statistics.median(ours_rates) / statistics.median(ref_rates):.2f}x |")
    print(f"\nBastion vs reference signature on {paths[0].name}: level-1 {level1:.4f}, level-2 {level2:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer images, shorter videos, 3 rounds")
    parser.add_argument("--images", type=int, help="number of images (default 60, quick 20)")
    parser.add_argument("--rounds", type=int, help="timing rounds (default 5 for images, 3 for videos)")
    parser.add_argument("--skip-video", action="store_true")
    args = parser.parse_args()
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "")
    model = model or platform.processor()
    print(
        f"machine: {model}, {os.cpu_count()} CPUs, pinned to CPU {cpu}; load average {os.getloadavg()[0]:.2f}; "
        f"Python {platform.python_version()}, PyAV {av.__version__} (FFmpeg {av.library_versions['libavcodec']})"
    )
    bench_images(args.images or (20 if args.quick else 60), args.rounds or (3 if args.quick else 5))
    if not args.skip_video:
        with tempfile.TemporaryDirectory() as tmp:
            lengths = [10, 10] if args.quick else [10, 20, 30]
            sets = list(VIDEO_SETS)[:1] if args.quick else list(VIDEO_SETS)
            paths = bench_videos(lengths, sets, args.rounds or 3, Path(tmp))
            bench_tmk(paths, args.rounds or 3)


if __name__ == "__main__":
    main()
