"""Benchmark: `bastion scan` over a folder of mixed files (images, videos, PDFs, texts, junk).

Builds the folder once (cached under --workdir), banks a share of it, then times the real command line
(`bastion scan DIR --json --workers N > /dev/null`) for each N, median of --rounds runs. The baseline is the same
scan with one worker, measured in the same run.

    .venv/bin/python bench/bench_scan.py [--files 2000] [--workers 1 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bastion.samples import encode, generate_image, sample_texts

ROOT = Path(__file__).resolve().parent.parent
BASTION = str(Path(sys.executable).parent / "bastion")


def minimal_pdf(text: str) -> bytes:
    """A valid one-page PDF showing ``text`` (written by hand: no PDF library needed for the bench)."""
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 11 Tf 40 800 Td ({safe[:180]}) Tj ET".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def write_video(path: Path, seed: int, seconds: int = 4, size: tuple[int, int] = (320, 240), fps: int = 10) -> None:
    import av

    base = generate_image(seed, size[0] + 64, size[1])
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(seconds * fps):
            shift = (i * 64) // (seconds * fps)
            frame = base.crop((shift, 0, shift + size[0], size[1]))
            for packet in stream.encode(av.VideoFrame.from_image(frame)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def build_corpus(folder: Path, n: int) -> dict[str, int]:
    """Mixed files in the proportions a platform sees: 60 % images, 5 % videos, 10 % PDFs, 20 % text, 5 % junk."""
    marker = folder / ".complete"
    counts = {"image": int(n * 0.60), "video": int(n * 0.05), "pdf": int(n * 0.10), "text": int(n * 0.20)}
    counts["junk"] = n - sum(counts.values())
    if marker.exists() and marker.read_text() == str(counts):
        return counts
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    words = " ".join(sample_texts()).split()
    bases = [generate_image(10_000 + i, 1024, 768) for i in range(min(40, counts["image"]))]
    for i in range(counts["image"]):
        # Distinct pictures cheaply: a random crop of a base picture, resized to a common upload size.
        w, h = [(1024, 768), (640, 480), (800, 600), (480, 640)][i % 4]
        base = bases[i % len(bases)]
        x, y = (int(v) for v in rng.integers(0, 200, 2))
        img = base.crop((x, y, x + 824, y + 568)).resize((w, h))
        (folder / f"img-{i:05d}.{'png' if i % 10 == 0 else 'jpg'}").write_bytes(
            encode(img, "PNG") if i % 10 == 0 else encode(img, quality=85)
        )
    for i in range(counts["video"]):
        write_video(folder / f"vid-{i:04d}.mp4", 50_000 + i)
    for i in range(counts["pdf"]):
        text = " ".join(rng.choice(words, 120))
        (folder / f"doc-{i:04d}.pdf").write_bytes(minimal_pdf(text))
    for i in range(counts["text"]):
        (folder / f"post-{i:05d}.txt").write_text(" ".join(rng.choice(words, int(rng.integers(20, 400)))))
    for i in range(counts["junk"]):
        kind = i % 3
        data = os.urandom(2048) if kind == 0 else (b"" if kind == 1 else encode(generate_image(i, 320, 240))[:900])
        (folder / f"junk-{i:04d}.{['bin', 'jpg', 'jpg'][kind]}").write_bytes(data)
    marker.write_text(str(counts))
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bastion-bench-scan"))
    args = ap.parse_args()

    corpus = args.workdir / f"corpus-{args.files}"
    t0 = time.perf_counter()
    counts = build_corpus(corpus, args.files)
    print(f"corpus: {counts} in {corpus} (built/checked in {time.perf_counter() - t0:.1f} s)")

    data_dir = args.workdir / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {**os.environ, "BASTION_DATA_DIR": str(data_dir)}
    env.pop("BASTION_DATABASE_URL", None)
    subprocess.run([BASTION, "bank", "create", "known"], env=env, check=True, capture_output=True)
    banked = sorted(corpus.glob("img-*.jpg"))[::10] + sorted(corpus.glob("vid-*.mp4"))[::4]
    subprocess.run([BASTION, "bank", "add", "known", *map(str, banked)], env=env, check=True, capture_output=True)
    # One warm-up scan builds and saves the index, as a long-running scanner would have.
    subprocess.run([BASTION, "scan", str(corpus), "--json"], env=env, check=True, stdout=subprocess.DEVNULL)

    rows = []
    for workers in args.workers:
        times = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            subprocess.run(
                [BASTION, "scan", str(corpus), "--json", "--workers", str(workers)],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            times.append(time.perf_counter() - t)
        rows.append((workers, statistics.median(times)))
    base = rows[0][1]
    print(
        f"\nbastion scan over {args.files} mixed files ({len(banked)} banked), median of {args.rounds} runs, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'workers':>8} {'seconds':>9} {'files/s':>9} {'vs 1 worker':>12}")
    for workers, secs in rows:
        print(f"{workers:>8} {secs:>9.2f} {args.files / secs:>9.1f} {base / secs:>11.2f}x")


if __name__ == "__main__":
    main()
