#!/usr/bin/env bash
# Video benchmark, side by side in one run: a generated 1080p30 H.264 High + AAC clip →
# 720/480/360 at 3000/1200/700 kbit/s, audio copied, for
#   - mediaflow (`process`, HLS off; decode once, three rungs encoded in parallel),
#   - ffmpeg + libx264 -preset veryfast (decode once, split=3, all cores),
#   - ffmpeg decode + scale only (the floor: no encoding at all).
# Prints medians of RUNS runs of wall time, CPU seconds and peak RSS, the top rung's PSNR
# against the source for both encoders, the ratios, and mediaflow's peak RSS on a 60 s clip
# against a 10 s one (memory must not grow with duration).
#
#   bash tests/bench/video.sh            # SECONDS_LONG=20 RUNS=3 by default
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-3}
LEN=${SECONDS_LONG:-20}
bash .ci/setup
cargo build --release -q -p mediaflow
bin=$PWD/target/release/mediaflow
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
clip() { # seconds file
    ffmpeg -v error -y -f lavfi -i "testsrc2=size=1920x1080:rate=30:duration=$1" \
        -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=$1" \
        -c:v libx264 -profile:v high -preset veryfast -b:v 8M -bf 3 -pix_fmt yuv420p \
        -c:a aac -b:a 128k -movflags +faststart "$2"
}
clip "$LEN" "$work/src.mp4"
clip 10 "$work/s10.mp4"
clip 60 "$work/s60.mp4"
cat > "$work/bench.toml" <<'TOML'
default_profile = "bench"
[profiles.bench]
video = { hls = false, ladder = [
    { size = 720, bitrate_kbps = 3000 },
    { size = 480, bitrate_kbps = 1200 },
    { size = 360, bitrate_kbps = 700 },
] }
TOML
export BIN=$bin WORK=$work RUNS
python3 - <<'PY'
import os, re, statistics, subprocess
work, bin_, runs = os.environ["WORK"], os.environ["BIN"], int(os.environ["RUNS"])
env = dict(os.environ, MEDIAFLOW_LOG="warn", XDG_CACHE_HOME=f"{work}/cache")

def timed(cmd):
    out = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M"] + cmd, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {out.stderr[-2000:]}")
    wall, user, sys_, rss = out.stderr.strip().splitlines()[-1].split()
    return float(wall), float(user) + float(sys_), int(rss) / 1024

def mediaflow(src, out):
    subprocess.run(["rm", "-rf", out])
    return timed([bin_, "process", src, "--out", out, "--config", f"{work}/bench.toml"])

split = ("[0:v]split=3[a][b][c];[a]scale=1280:720[o1];[b]scale=854:480[o2];[c]scale=640:360[o3]")
def x264(src):
    return timed(["ffmpeg", "-v", "error", "-y", "-i", src, "-filter_complex", split,
        "-map", "[o1]", "-map", "0:a", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "3000k", "-c:a", "copy", f"{work}/x720.mp4",
        "-map", "[o2]", "-map", "0:a", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "1200k", "-c:a", "copy", f"{work}/x480.mp4",
        "-map", "[o3]", "-map", "0:a", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "700k", "-c:a", "copy", f"{work}/x360.mp4"])

def floor(src):
    return timed(["ffmpeg", "-v", "error", "-y", "-i", src, "-filter_complex", split,
        "-map", "[o1]", "-f", "null", "-", "-map", "[o2]", "-f", "null", "-", "-map", "[o3]", "-f", "null", "-"])

def psnr(a, src, size):
    r = subprocess.run(["ffmpeg", "-i", a, "-i", src, "-lavfi",
        f"[1:v]scale={size}:flags=bicubic[r];[0:v][r]psnr", "-f", "null", "-"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    m = re.search(r"average:([0-9.]+)", r.stderr)
    return float(m.group(1)) if m else float("nan")

src = f"{work}/src.mp4"
res = {"mediaflow": [], "x264": [], "floor": []}
for _ in range(runs):
    res["mediaflow"].append(mediaflow(src, f"{work}/mf"))
    res["x264"].append(x264(src))
    res["floor"].append(floor(src))
med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) for k, v in res.items()}
print(f"{'':10} {'wall s':>8} {'CPU s':>8} {'RSS MiB':>8}")
for k, (w, c, m) in med.items():
    print(f"{k:10} {w:8.2f} {c:8.2f} {m:8.0f}")
stem = "src"
for name, size in (("720p", "1280:720"), ("480p", "854:480"), ("360p", "640:360")):
    x = {"720p": "x720", "480p": "x480", "360p": "x360"}[name]
    a = psnr(f"{work}/mf/{stem}/{name}.mp4", src, size)
    b = psnr(f"{work}/{x}.mp4", src, size)
    print(f"PSNR {name}: mediaflow {a:.2f} dB, x264 veryfast {b:.2f} dB, difference {a - b:+.2f} dB")
mf, xx, fl = med["mediaflow"], med["x264"], med["floor"]
print(f"wall: mediaflow / x264 = {mf[0] / xx[0]:.2f}x (goal <= 0.6)")
print(f"CPU:  mediaflow / decode+scale floor = {mf[1] / fl[1]:.2f}x (goal <= 2)")
print(f"peak RSS: mediaflow {mf[2]:.0f} MiB (goal <= 300)")
short = mediaflow(f"{work}/s10.mp4", f"{work}/m10")
long = mediaflow(f"{work}/s60.mp4", f"{work}/m60")
print(f"memory vs duration: 60 s {long[2]:.0f} MiB / 10 s {short[2]:.0f} MiB = {long[2] / short[2]:.2f}x (goal <= 1.1)")
PY
