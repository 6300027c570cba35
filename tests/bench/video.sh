#!/usr/bin/env bash
# Video benchmark, side by side in one run: a generated 1080p30 H.264 High + AAC clip →
# 720/480/360 at 3000/1200/700 kbit/s, audio copied, for
#   - mediaflow (`process`, HLS off; decode once in the isolated decoder, three rungs encoded
#     in parallel),
#   - ffmpeg + libx264 -preset veryfast (decode once, split=3, all cores),
#   - ffmpeg decode + scale only (the floor: no encoding at all);
# then the same ladder from a 1080p HEVC Main 10 HLG clip (an iPhone-like HDR source):
# mediaflow (tone-mapped in its decoder) against ffmpeg's own decode + zscale/tonemap + x264.
# Prints medians of RUNS runs of wall time, CPU seconds (every process of the run) and peak
# RSS (the whole process tree, engine and decoder together, sampled every 20 ms), the top
# rung's PSNR against the source for both encoders, the ratios, and mediaflow's peak RSS on a
# 60 s clip against a 10 s one (memory must not grow with duration).
#
# Then quality per bit on realistic 1080p30 sources (PART=quality runs only this): a slow pan
# over a large detailed picture (easy), ffmpeg's mandelbrot zooming under temporal noise
# (hard), and a screen recording of text scrolling. For each rung (1080p/720p/360p) and
# encoder — mediaflow H.264 (OpenH264), mediaflow AV1 (SVT-AV1) and ffmpeg + x264 veryfast —
# bytes, PSNR and SSIM against the same reference, and "bits saved vs x264 at equal PSNR": each
# output placed on x264's bits-vs-PSNR curve from four bitrates. CPU seconds of each encoder's
# whole ladder (decode included, as for x264) and the ratios.
#
#   bash tests/bench/video.sh            # SECONDS_LONG=20 RUNS=3 by default
#   PART=quality QLEN=10 bash tests/bench/video.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-3}
LEN=${SECONDS_LONG:-20}
PART=${PART:-all}
bash .ci/setup
cargo build --release -q -p mediaflow
bin=$PWD/target/release/mediaflow
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "$PART" != "quality" ]; then
clip() { # seconds file
    ffmpeg -v error -y -f lavfi -i "testsrc2=size=1920x1080:rate=30:duration=$1" \
        -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=$1" \
        -c:v libx264 -profile:v high -preset veryfast -b:v 8M -bf 3 -pix_fmt yuv420p \
        -c:a aac -b:a 128k -movflags +faststart "$2"
}
clip "$LEN" "$work/src.mp4"
# HDR: the same pattern, HLG BT.2020 10-bit HEVC (as a phone records), audio AAC.
ffmpeg -v error -y -f lavfi -i "testsrc2=size=1920x1080:rate=30:duration=$LEN" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=$LEN" \
    -vf "format=gbrp,zscale=min=gbr:tin=bt709:pin=bt709:rin=full:t=arib-std-b67:p=bt2020:m=bt2020nc:r=tv:npl=203,format=yuv420p10le" \
    -c:v libx265 -preset fast -b:v 10M \
    -x265-params "log-level=error:colorprim=bt2020:transfer=arib-std-b67:colormatrix=bt2020nc" \
    -c:a aac -b:a 128k -movflags +faststart "$work/hlg.mp4"
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
env = dict(os.environ, MEDIAFLOW_LOG="warn", XDG_CACHE_HOME=f"{work}/cache", XDG_DATA_HOME=f"{work}/data")

def tree_rss_kib(root):
    """Resident memory of `root` and every process under it, KiB."""
    kids, rss = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss[int(d)] = int(line.split()[1])
            kids.setdefault(ppid, []).append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(kids.get(p, []))
    return total

def timed(cmd):
    """Wall s, CPU s of the whole tree (wait4's children usage), peak tree RSS MiB."""
    import time
    start = time.monotonic()
    before = os.times()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while p.poll() is None:
        peak = max(peak, tree_rss_kib(p.pid))
        time.sleep(0.02)
    err = p.stderr.read().decode(errors="replace")
    after = os.times()
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {err[-2000:]}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return time.monotonic() - start, cpu, peak / 1024

def mediaflow(src, out):
    subprocess.run(["rm", "-rf", out])
    return timed([bin_, "process", src, "--out", out, "--config", f"{work}/bench.toml"])

split = ("[0:v]split=3[a][b][c];[a]scale=1280:720[o1];[b]scale=854:480[o2];[c]scale=640:360[o3]")
def x264(src):
    return timed(["ffmpeg", "-v", "error", "-y", "-i", src, "-filter_complex", split,
        "-map", "[o1]", "-map", "0:a", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "3000k", "-c:a", "copy", f"{work}/x720.mp4",
        "-map", "[o2]", "-map", "0:a", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "1200k", "-c:a", "copy", f"{work}/x480.mp4",
        "-map", "[o3]", "-map", "0:a", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "700k", "-c:a", "copy", f"{work}/x360.mp4"])

tonemap = ("[0:v]zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=hable:desat=0,"
           "zscale=t=bt709:m=bt709:r=tv,format=yuv420p,split=3[a][b][c];"
           "[a]scale=1280:720[o1];[b]scale=854:480[o2];[c]scale=640:360[o3]")
def x264_hdr(src):
    return timed(["ffmpeg", "-v", "error", "-y", "-i", src, "-filter_complex", tonemap,
        "-map", "[o1]", "-map", "0:a", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "3000k", "-c:a", "copy", f"{work}/h720.mp4",
        "-map", "[o2]", "-map", "0:a", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "1200k", "-c:a", "copy", f"{work}/h480.mp4",
        "-map", "[o3]", "-map", "0:a", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "700k", "-c:a", "copy", f"{work}/h360.mp4"])

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
hdr = {"mediaflow": [], "ffmpeg": []}
for _ in range(runs):
    hdr["mediaflow"].append(mediaflow(f"{work}/hlg.mp4", f"{work}/mh"))
    hdr["ffmpeg"].append(x264_hdr(f"{work}/hlg.mp4"))
hmed = {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) for k, v in hdr.items()}
print(f"\nHEVC Main 10 HLG 1080p source, tone-mapped to SDR:")
print(f"{'':10} {'wall s':>8} {'CPU s':>8} {'RSS MiB':>8}")
for k, (w, c, m) in hmed.items():
    print(f"{k:10} {w:8.2f} {c:8.2f} {m:8.0f}")
hm, hf = hmed["mediaflow"], hmed["ffmpeg"]
print(f"HDR wall: mediaflow / ffmpeg (decode+zscale+tonemap+x264) = {hm[0] / hf[0]:.2f}x, CPU {hm[1] / hf[1]:.2f}x")
short = mediaflow(f"{work}/s10.mp4", f"{work}/m10")
long = mediaflow(f"{work}/s60.mp4", f"{work}/m60")
print(f"memory vs duration: 60 s {long[2]:.0f} MiB / 10 s {short[2]:.0f} MiB = {long[2] / short[2]:.2f}x (goal <= 1.1)")
PY
fi
[ "$PART" = "speed" ] && exit 0
BIN=$bin WORK=$work RUNS=$RUNS bash tests/bench/quality.sh
