#!/usr/bin/env bash
# Thumbnails: our pipeline against Pillow (draft + thumbnail), sharp (libvips in process, the
# fastest Node pipeline) and vipsthumbnail on the same machine and the same deterministic
# 4032x3024 images, producing the same outputs (a display image bounded by 2048 plus
# 1280/640/320 thumbnails, EXIF orientation applied, metadata dropped, JPEG q85). Installs
# Pillow (a venv), sharp (npm) and libvips-tools (apt) under ~/.cache/forum-ci if missing.
#
#   bash bench/compare_thumbnails.sh                       # forum-bench with --profile perf, 15 runs
#   RUNS=2 BENCH_PROFILE=dev bash bench/compare_thumbnails.sh  # CI's short run (the test build)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/forum-target}"
RUNS="${RUNS:-15}"
PROFILE="${BENCH_PROFILE:-perf}"
OUT="$CARGO_TARGET_DIR/thumbnail-bench"
TOOLS="$HOME/.cache/forum-ci"

# Debian's python refuses pip outside a venv (PEP 668): Pillow lives in its own.
pillow="$TOOLS/pillow"
[ -x "$pillow/bin/python" ] && "$pillow/bin/python" -c 'import PIL' 2>/dev/null || {
  python3 -m venv "$pillow" && "$pillow/bin/pip" install -q "pillow==11.*"
}
sharp="$TOOLS/sharp-0.34"
[ -d "$sharp/node_modules/sharp" ] || npm install -s --prefix "$sharp" --no-audit --no-fund "sharp@0.34" >/dev/null
if ! command -v vipsthumbnail >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvips-tools >/dev/null
fi

mkdir -p "$OUT"
if [ "$PROFILE" = dev ]; then
  cargo build -q --locked -p forum-bench
  bench="$CARGO_TARGET_DIR/debug/forum-bench"
else
  cargo build -q --locked --profile "$PROFILE" -p forum-bench
  bench="$CARGO_TARGET_DIR/$PROFILE/forum-bench"
fi
echo "== forum (shared::media::process, what process-media runs)"
"$bench" thumbnails --runs "$RUNS" --out "$OUT" | tee "$OUT/forum.txt"

echo
echo "== Pillow $("$pillow/bin/python" -c 'import PIL; print(PIL.__version__)') (draft + thumbnail, same outputs)"
"$pillow/bin/python" - "$OUT" "$RUNS" <<'PY' | tee "$OUT/pillow.txt"
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

def median_ms(work, path, runs_here):
    work(path)                          # untimed first run
    times = []
    for _ in range(runs_here):
        t0 = time.perf_counter(); work(path); times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000

for name, runs_here in (("photo-4032x3024.jpg", runs), ("photo-4032x3024.png", min(runs, 5))):
    print(f"{name}: median {median_ms(pipeline, f'{out}/{name}', runs_here):.1f} ms over {runs_here} runs")
# libjpeg-turbo's entropy decoding, as forum-bench times ours: a decode at 1/8 scale.
def floor(path):
    im = Image.open(path)
    im.draft("RGB", (im.width // 8, im.height // 8))
    im.load()
print(f"entropy floor, a decode at 1/8 scale (draft, 1 thread): "
      f"median {median_ms(floor, f'{out}/photo-4032x3024.jpg', runs):.1f} ms over {runs} runs")
print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.1f} MB")
PY

echo
echo "== sharp $(node -p "require('$sharp/node_modules/sharp/package.json').version") (libvips $(node -p "require('$sharp/node_modules/sharp').versions.vips") in process; the faster of decoding once and one shrink-on-load pipeline per size)"
# JPEG q85 with libjpeg-turbo's defaults (sharp's `mozjpeg: true` adds trellis quantisation
# and progressive scans, several times slower, which none of the others do).
NODE_PATH="$sharp/node_modules" node - "$OUT" "$RUNS" <<'JS' | tee "$OUT/sharp.txt"
const sharp = require("sharp");
const [out, runsArg] = process.argv.slice(2);
sharp.concurrency(2);
async function pipeline(path, jpeg) {
  // Orientation applied, metadata dropped (sharp's default), like ours.
  let input = await sharp(path).rotate().raw().toBuffer({ resolveWithObject: true });
  const outputs = [];
  for (const bound of [2048, 1280, 640, 320]) {
    const resized = await sharp(input.data, { raw: input.info })
      .resize(bound, bound, { fit: "inside", withoutEnlargement: true })
      .raw()
      .toBuffer({ resolveWithObject: true });
    const encoded = sharp(resized.data, { raw: resized.info });
    outputs.push(await (jpeg ? encoded.jpeg({ quality: 85 }) : encoded.png({ compressionLevel: 1 })).toBuffer());
    input = resized;
  }
  return outputs;
}
// One pipeline per size, each from the file: libvips shrinks a JPEG while decoding it.
async function perSize(path, jpeg) {
  return Promise.all(
    [2048, 1280, 640, 320].map((bound) => {
      const resized = sharp(path).rotate().resize(bound, bound, { fit: "inside", withoutEnlargement: true });
      return (jpeg ? resized.jpeg({ quality: 85 }) : resized.png({ compressionLevel: 1 })).toBuffer();
    }),
  );
}
async function median(run, path, jpeg, runs) {
  await run(path, jpeg);
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await run(path, jpeg);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}
(async () => {
  for (const [name, jpeg, runs] of [["photo-4032x3024.jpg", true, +runsArg], ["photo-4032x3024.png", false, Math.min(+runsArg, 5)]]) {
    const path = `${out}/${name}`;
    const once = await median(pipeline, path, jpeg, runs);
    const each = await median(perSize, path, jpeg, runs);
    const [best, how] = once <= each ? [once, "decoded once"] : [each, "a pipeline per size"];
    console.log(`${name}: median ${best.toFixed(1)} ms over ${runs} runs (${how}; decoded once ${once.toFixed(1)}, per size ${each.toFixed(1)})`);
  }
  console.log(`peak RSS of this process: ${(process.resourceUsage().maxRSS / 1024).toFixed(1)} MB`);
})();
JS

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
pil, sharp, vips = medians(f"{out}/pillow.txt"), medians(f"{out}/sharp.txt"), medians(f"{out}/vips.txt")
print("| image | forum ms | Pillow ms | sharp ms | vipsthumbnail ms | forum / Pillow | forum / sharp |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for threads in ("2 threads", "1 thread"):
    ours = medians(f"{out}/forum.txt", threads)
    for kind in ("jpeg", "png"):
        o, p, s, v = ours.get(kind), pil.get(kind), sharp.get(kind), vips.get(kind)
        if o and p and s and v:
            print(f"| {kind} 4032x3024, forum {threads} | {o:.1f} | {p:.1f} | {s:.1f} | {v:.1f} | {o/p:.2f}x | {o/s:.2f}x |")
# The JPEG's entropy decoding is serial (this photo has no restart markers): no pipeline is
# faster than its decoder's floor, so half Pillow's time is within reach only below it.
def floor(path):
    for line in open(path):
        m = re.search(r"entropy floor.*?median ([0-9.]+) ms", line)
        if m:
            return float(m.group(1))
ours_floor, pil_floor, pil_jpeg = floor(f"{out}/forum.txt"), floor(f"{out}/pillow.txt"), pil.get("jpeg")
if ours_floor and pil_floor and pil_jpeg:
    print()
    print(f"JPEG entropy floor (a decode at 1/8): forum {ours_floor:.1f} ms, libjpeg-turbo (Pillow) {pil_floor:.1f} ms "
          f"({ours_floor/pil_floor:.2f}x); Pillow's floor is {pil_floor/pil_jpeg:.0%} of its pipeline, "
          f"half its pipeline is {pil_jpeg/2:.1f} ms")
PY
