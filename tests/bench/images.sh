#!/usr/bin/env bash
# Image benchmark, side by side in one run: generated 4000×3000 photo-like JPEGs →
# 1600/800/200-wide JPEG q85, one thread each, for mediaflow (decode once, shrink-on-load,
# three renditions), ffmpeg (lanczos, decode once, split=3) and `vips thumbnail` (one call per
# size, each with shrink-on-load). Prints images per CPU-second, wall time and peak RSS as
# medians of RUNS runs (the tools interleaved within each run), and the ratios.
#
#   bash tests/bench/images.sh            # IMAGES=8 RUNS=3 by default
#   BASE_BIN=/path/to/old/mediaflow bash tests/bench/images.sh   # also compare with an older build
#   BIN=target/debug/mediaflow bash tests/bench/images.sh         # measure that build instead
#
# Then, on the same images: the JPEG outputs' bytes, PSNR and SSIM against a lossless PNG of the
# same rendition (ffmpeg's psnr/ssim filters), for this build and BASE_BIN if given; and AVIF
# encode time per megapixel, bytes and PSNR at speeds 6, 8 and 10 (1600-wide rendition).
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAGES=${IMAGES:-8}
RUNS=${RUNS:-3}
command -v vips >/dev/null || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y -qq --no-install-recommends libvips-tools >/dev/null; }
bash .ci/setup
# BIN=path/to/mediaflow measures that build instead of building the release one.
if [ -z "${BIN:-}" ]; then
    cargo build --release -q -p mediaflow
    bin=$PWD/target/release/mediaflow
else
    bin=$(realpath "$BIN")
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/in"
for i in $(seq 1 "$IMAGES"); do
    # Gradients with upscaled noise (texture, not per-pixel static): ~6 MB, like a 12 MP photo.
    ffmpeg -v error -y -f lavfi -i "gradients=s=1000x750:seed=$i:c0=0x2a4d69:c1=0xe7c08f:c2=0x4b86b4:c3=0xadcbe3:n=4,noise=alls=20:allf=t:all_seed=$i,scale=4000:3000:flags=bicubic" \
        -frames:v 1 -q:v 6 "$work/in/img$i.jpg"
done
cat > "$work/bench.toml" <<'TOML'
default_profile = "bench"
[profiles.bench]
renditions = [
    { name = "w1600", width = 1600, format = "jpeg", quality = 85 },
    { name = "w800", width = 800, format = "jpeg", quality = 85 },
    { name = "w200", width = 200, format = "jpeg", quality = 85 },
]
TOML
export BIN=$bin WORK=$work IMAGES RUNS BASE_BIN=${BASE_BIN:-}
python3 - <<'PY'
import os, statistics, subprocess, time, glob, shutil
work, bin_, runs = os.environ["WORK"], os.environ["BIN"], int(os.environ["RUNS"])
images = sorted(glob.glob(f"{work}/in/*.jpg"))
env = dict(os.environ, VIPS_CONCURRENCY="1", MEDIAFLOW_LOG="warn", XDG_CACHE_HOME=f"{work}/cache", XDG_DATA_HOME=f"{work}/data")

def measure(cmds):
    """Run commands one after another; return (wall s, cpu s, peak RSS MiB) of the children."""
    cpu, peak = 0.0, 0
    t = time.monotonic()
    for c in cmds:
        with open(f"{work}/stderr", "w+b") as err:
            p = subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=err)
            # wait4: this child's own CPU time and peak RSS.
            _, status, ru = os.wait4(p.pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                err.seek(0)
                raise SystemExit(f"failed: {' '.join(c)}\n{err.read().decode()}")
        cpu += ru.ru_utime + ru.ru_stime
        peak = max(peak, ru.ru_maxrss)
    return time.monotonic() - t, cpu, peak / 1024

def out(tool):
    d = f"{work}/out-{tool}"
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d

tools = {
    "mediaflow": lambda: [[bin_, "process", *images, "--out", out("mediaflow"), "--config", f"{work}/bench.toml", "--jobs", "1"]],
    **({"mediaflow-base": lambda: [[os.environ["BASE_BIN"], "process", *images, "--out", out("mediaflow-base"), "--config", f"{work}/bench.toml", "--jobs", "1"]]}
       if os.environ.get("BASE_BIN") else {}),
    "ffmpeg": lambda: [["ffmpeg", "-v", "error", "-y", "-threads", "1", "-filter_threads", "1", "-i", img,
                        "-filter_complex", "[0]split=3[a][b][c];[a]scale=1600:-2:flags=lanczos[o1];[b]scale=800:-2:flags=lanczos[o2];[c]scale=200:-2:flags=lanczos[o3]",
                        "-map", "[o1]", "-q:v", "3", f"{out('ffmpeg')}/{i}-1600.jpg",
                        "-map", "[o2]", "-q:v", "3", f"{work}/out-ffmpeg/{i}-800.jpg",
                        "-map", "[o3]", "-q:v", "3", f"{work}/out-ffmpeg/{i}-200.jpg"] for i, img in enumerate(images)],
    "vips": lambda: [["vips", "thumbnail", img, f"{out('vips') if i == 0 and w == 1600 else work + '/out-vips'}/{i}-{w}.jpg[Q=85]", str(w)]
                     for i, img in enumerate(images) for w in (1600, 800, 200)],
}
# Warm caches (and mediaflow's compiled-plugin cache) once.
for make in tools.values():
    measure(make())
# Interleave the tools run by run, so a noisy neighbour slows all of them alike.
samples = {name: [] for name in tools}
for _ in range(runs):
    for name, make in tools.items():
        samples[name].append(measure(make()))
results = {name: tuple(statistics.median(s[k] for s in ss) for k in range(3)) for name, ss in samples.items()}
n = len(images)
print(f"\n{n} images 4000x3000 → 1600/800/200 JPEG q85, one thread, median of {runs} runs")
print(f"{'tool':<10} {'wall s':>8} {'cpu s':>8} {'img/cpu-s':>10} {'peak RSS MiB':>13}")
for name, (wall, cpu, rss) in results.items():
    print(f"{name:<10} {wall:>8.2f} {cpu:>8.2f} {n / cpu:>10.2f} {rss:>13.1f}")
mf = n / results["mediaflow"][1]
print(f"\nmediaflow vs ffmpeg: {mf / (n / results['ffmpeg'][1]):.2f}x images per CPU-second (goal ≥ 1.5x)")
print(f"mediaflow vs vips:   {mf / (n / results['vips'][1]):.2f}x images per CPU-second (goal ≥ 3x)")
print(f"mediaflow peak RSS:  {results['mediaflow'][2]:.0f} MiB (goal ≤ 200 MiB)")
if "mediaflow-base" in results:
    base = n / results["mediaflow-base"][1]
    print(f"mediaflow-base:      {base:.2f} images per CPU-second; this build {mf / base:.2f}x; "
          f"base vs ffmpeg {base / (n / results['ffmpeg'][1]):.2f}x, vs vips {base / (n / results['vips'][1]):.2f}x")

import json, re

def compare(a, b):
    """ffmpeg's PSNR (average, dB) and SSIM (All) of picture a against b."""
    r = subprocess.run(["ffmpeg", "-v", "info", "-i", a, "-i", b, "-lavfi", "[0][1]psnr;[0][1]ssim", "-f", "null", "-"],
                       capture_output=True, text=True, check=True).stderr
    return float(re.search(r"average:([0-9.]+|inf)", r).group(1)), float(re.search(r"All:([0-9.]+)", r).group(1))

def jpeg_quality(binary, tag):
    conf = f"{work}/quality.toml"
    with open(conf, "w") as f:
        f.write('default_profile = "q"\n[profiles.q]\nrenditions = [\n' + "".join(
            f'  {{ name = "j{w}", width = {w}, format = "jpeg", quality = 85 }},\n'
            f'  {{ name = "p{w}", width = {w}, format = "png" }},\n' for w in (1600, 800, 200)) + "]\n")
    d = out(f"quality-{tag}")
    subprocess.run([binary, "process", *images, "--out", d, "--config", conf, "--jobs", "1"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = {}
    for w in (1600, 800, 200):
        sizes, psnrs, ssims = [], [], []
        for img in images:
            stem = os.path.splitext(os.path.basename(img))[0]
            jpg, png = f"{d}/{stem}/j{w}.jpg", f"{d}/{stem}/p{w}.png"
            sizes.append(os.path.getsize(jpg))
            p, s = compare(jpg, png)
            psnrs.append(p)
            ssims.append(s)
        rows[w] = (statistics.median(sizes), statistics.median(psnrs), statistics.median(ssims))
    return rows

print("\nJPEG outputs q85 against a lossless PNG of the same rendition (medians over the images)")
print(f"{'build':<16} {'width':>6} {'bytes':>9} {'PSNR dB':>8} {'SSIM':>8}")
builds = [("this", bin_)] + ([("base", os.environ["BASE_BIN"])] if os.environ.get("BASE_BIN") else [])
for tag, binary in builds:
    for w, (size, p, s) in jpeg_quality(binary, tag).items():
        print(f"{tag:<16} {w:>6} {size:>9.0f} {p:>8.2f} {s:>8.4f}")

print("\nAVIF 1600-wide rendition, q80: encode time per megapixel, bytes, PSNR against a PNG of it")
def run_profile(tag, rendition):
    conf = f"{work}/{tag}.toml"
    with open(conf, "w") as f:
        f.write(f'default_profile = "x"\n[profiles.x]\nrenditions = [{rendition}]\n')
    d = out(tag)
    subprocess.run([bin_, "process", *images, "--out", d, "--config", conf, "--jobs", "1"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return d
ref = run_profile("png-ref", '{ name = "p", width = 1600, format = "png" }')
print(f"{'speed':>5} {'ms/MP':>8} {'bytes':>9} {'PSNR dB':>8}")
for speed in (6, 8, 10):
    d = run_profile(f"avif-{speed}", f'{{ name = "a", width = 1600, format = "avif", quality = 80, speed = {speed} }}')
    ms, sizes, psnrs = [], [], []
    for img in images:
        stem = os.path.splitext(os.path.basename(img))[0]
        m = json.load(open(f"{d}/{stem}/manifest.json"))
        a = m["outputs"][0]
        ms.append(m["timings_ms"]["encode"] / (a["width"] * a["height"] / 1e6))
        sizes.append(a["bytes"])
        psnrs.append(compare(f"{d}/{stem}/a.avif", f"{ref}/{stem}/p.png")[0])
    print(f"{speed:>5} {statistics.median(ms):>8.0f} {statistics.median(sizes):>9.0f} {statistics.median(psnrs):>8.2f}")
PY
