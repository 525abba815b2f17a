#!/usr/bin/env bash
# Thumbnails: our pipeline against Pillow (draft + thumbnail) and libvips (vipsthumbnail) on the
# same machine and the same deterministic 4032x3024 images, producing the same outputs (a
# display image bounded by 2048 plus 1280/640/320 thumbnails, EXIF orientation applied,
# metadata dropped). Installs Pillow (pip) and libvips-tools (apt) if missing.
#
#   bash bench/compare_thumbnails.sh            # builds forum-bench with --profile perf
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/forum-target}"
RUNS="${RUNS:-15}"
OUT="$CARGO_TARGET_DIR/thumbnail-bench"

python3 -c 'import PIL' 2>/dev/null || pip install -q pillow
if ! command -v vipsthumbnail >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvips-tools >/dev/null
fi

mkdir -p "$OUT"
cargo build -q --profile perf -p forum-bench
echo "== forum (shared::media::process, what process-media runs)"
"$CARGO_TARGET_DIR/perf/forum-bench" thumbnails --runs "$RUNS" --out "$OUT" | tee "$OUT/forum.txt"

echo
echo "== Pillow $(python3 -c 'import PIL; print(PIL.__version__)') (draft + thumbnail, same outputs)"
python3 - "$OUT" "$RUNS" <<'PY' | tee "$OUT/pillow.txt"
import io, resource, statistics, sys, time
from PIL import Image, ImageOps
out, runs = sys.argv[1], int(sys.argv[2])

def pipeline(path):
    im = Image.open(path)
    if im.format == "JPEG":
        im.draft("RGB", (1280, 1280))   # DCT scaling, like ours
    im = ImageOps.exif_transpose(im)    # orientation applied, EXIF dropped on save
    fmt = "JPEG" if im.format != "PNG" and path.endswith(".jpg") else "PNG"
    results = []
    for bound in (2048, 1280, 640, 320):
        t = im.copy()
        t.thumbnail((bound, bound), Image.BICUBIC)
        buf = io.BytesIO()
        if fmt == "JPEG":
            t.convert("RGB").save(buf, "JPEG", quality=85)
        else:
            t.save(buf, "PNG", compress_level=1)
        results.append(buf.getvalue())
        im = t                          # each size from the previous, like ours
    return results

for name, runs_here in (("photo-4032x3024.jpg", runs), ("photo-4032x3024.png", min(runs, 5))):
    path = f"{out}/{name}"
    pipeline(path)
    times = []
    for _ in range(runs_here):
        t0 = time.perf_counter(); pipeline(path); times.append(time.perf_counter() - t0)
    print(f"{name}: median {statistics.median(times)*1000:.1f} ms over {runs_here} runs")
print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.1f} MB")
PY

echo
echo "== libvips $(vips --version 2>/dev/null | head -1) (vipsthumbnail, one process per size, shrink-on-load)"
for name in photo-4032x3024.jpg photo-4032x3024.png; do
  ext="${name##*.}"
  python3 - "$OUT" "$name" "$ext" "$RUNS" <<'PY' | tee -a "$OUT/vips.txt"
import statistics, subprocess, sys, time, resource
out, name, ext, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if ext == "png":
    runs = min(runs, 5)
opts = "[Q=85,strip]" if ext == "jpg" else "[compression=1,strip]"
def once():
    for size in (2048, 1280, 640, 320):
        subprocess.run(["vipsthumbnail", f"{out}/{name}", "-s", str(size), "-o", f"{out}/vips-{size}.{ext}{opts}"], check=True)
once()
times = []
for _ in range(runs):
    t0 = time.perf_counter(); once(); times.append(time.perf_counter() - t0)
print(f"{name}: median {statistics.median(times)*1000:.1f} ms over {runs} runs (4 processes)")
print(f"  peak RSS of one vipsthumbnail: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024:.1f} MB")
PY
done

echo
python3 - "$OUT" <<'PY'
import re, sys
out = sys.argv[1]
def medians(path, threads=""):
    found = {}
    for line in open(path):
        m = re.search(r"(JPEG|PNG|jpg|png)\S*.*?median ([0-9.]+) ms", line)
        if m and threads in line:
            found["jpeg" if m.group(1).lower().startswith("j") else "png"] = float(m.group(2))
    return found
pil, vips = medians(f"{out}/pillow.txt"), medians(f"{out}/vips.txt")
print("| image | forum ms | Pillow ms | vipsthumbnail ms | Pillow / forum | vips / forum |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for threads in ("2 threads", "1 thread"):
    ours = medians(f"{out}/forum.txt", threads)
    for kind in ("jpeg", "png"):
        o, p, v = ours.get(kind), pil.get(kind), vips.get(kind)
        if o and p and v:
            print(f"| {kind} 4032x3024, forum {threads} | {o:.1f} | {p:.1f} | {v:.1f} | {p/o:.2f}x | {v/o:.2f}x |")
PY
