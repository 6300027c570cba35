#!/usr/bin/env bash
# Quality per bit, side by side in one run (called by tests/bench/video.sh; runs alone too):
# three realistic 1080p30 sources of QLEN seconds (default 10) —
#   pan     a slow pan over a large detailed picture (fractal detail under fine grain): easy,
#   noise   ffmpeg's mandelbrot zooming under temporal noise: hard,
#   screen  a screen recording: a page of text scrolling —
# each made into a 1080p/720p/360p ladder by
#   mediaflow H.264 (OpenH264) at 4000/2000/600 kbit/s,
#   mediaflow AV1 (SVT-AV1, the profile's default preset) at half those,
#   ffmpeg + x264 -preset veryfast at 4000/2000/600 kbit/s (decode once, split=3),
# and, for the curve, x264 veryfast at 1/4, 1/2, 1 and 2 times each rung's bitrate.
# x264 is run as an adaptive-streaming ladder is encoded: a keyframe every 2 s and no scene-cut
# keyframes (-g 60 -keyint_min 60 -sc_threshold 0), the grid mediaflow's rungs are held to
# (keyframe_interval_s = 2) so every rendition can switch at every segment; X264_GOP=free lets
# x264 place its own keyframes (every 250 frames at most, and at scene cuts), which no HLS
# ladder can do, for comparison.
# Per rung and encoder: kbit/s, PSNR and SSIM against the same reference (the source scaled to
# the rung with bicubic), and bits saved against x264 veryfast at equal PSNR (log-bitrate
# interpolated on x264's curve; `~` marks an extrapolation). Per source: CPU seconds of each
# encoder's whole ladder (decode included for all three; medians of RUNS runs) and the ratio.
# Goals (issue 17): AV1 saves >= 30 % of x264 veryfast's bits at equal PSNR for <= 1.5x its CPU.
#
# Then content-aware bitrates (`bitrate = "auto"`): the product's default ladder (H.264
# 1080p/720p/360p at 5000/3000/700 kbit/s; AV1 at 2500/1500/350, as the `watermarked` profile)
# fixed against the same ladder with `bitrate = "auto"` (quality AUTO_QUALITY, default the
# profile default 9; the rungs' bitrates become caps): per rung and codec, bits saved and PSNR
# change, and CPU seconds of each ladder (the auto one includes the AV1 rungs' rate probe).
# Goals: >= 20 % fewer bits on the easy source (pan) at <= 0.5 dB lower PSNR, and never a
# lower PSNR than the fixed ladder on the hard one (noise).
#
#   QLEN=10 RUNS=3 bash tests/bench/quality.sh     # SOURCES="pan noise screen" by default
#   PARTS="auto" bash tests/bench/quality.sh       # only the content-aware comparison
set -euo pipefail
cd "$(dirname "$0")/../.."
QLEN=${QLEN:-10}
RUNS=${RUNS:-3}
if [ -z "${BIN:-}" ]; then
    bash .ci/setup
    cargo build --release -q -p mediaflow
    BIN=$PWD/target/release/mediaflow
fi
if [ -z "${WORK:-}" ]; then
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
fi
q=$WORK/quality
mkdir -p "$q"
lossless=(-c:v libx264 -preset ultrafast -qp 2 -pix_fmt yuv420p)
# pan: a 4K still (fractal detail, fine static grain, slight blur, as a photo has), panned.
ffmpeg -v error -y -f lavfi -i "mandelbrot=size=3840x2160:rate=1:end_pts=1:start_scale=1.5:end_scale=1.5" \
    -frames:v 1 -vf "noise=alls=25:allf=u,gblur=sigma=0.8" "$q/still.png"
ffmpeg -v error -y -loop 1 -framerate 30 -i "$q/still.png" -t "$QLEN" \
    -vf "crop=1920:1080:x='(iw-1920)*t/$QLEN':y='(ih-1080)*t/($QLEN*2)',format=yuv420p" \
    "${lossless[@]}" "$q/pan.mp4"
# noise: the mandelbrot zoom with temporal noise (film grain, sensor noise).
ffmpeg -v error -y -f lavfi -i "mandelbrot=size=1920x1080:rate=30" -t "$QLEN" \
    -vf "noise=alls=12:allf=t,format=yuv420p" "${lossless[@]}" "$q/noise.mp4"
# screen: this repository's README typeset on a tall page, scrolled like a reader does.
font=$(fc-match -f '%{file}' monospace)
ffmpeg -v error -y -f lavfi -i "color=c=white:s=1920x6480:r=1" -frames:v 1 \
    -vf "drawtext=fontfile=$font:textfile=README.md:fontsize=20:line_spacing=4:x=60:y=30:fontcolor=0x1d2430:expansion=none" \
    "$q/page.png"
ffmpeg -v error -y -loop 1 -framerate 30 -i "$q/page.png" -t "$QLEN" \
    -vf "crop=1920:1080:0:'min(ih-1080,max(0,(t-1)*80))',format=yuv420p" "${lossless[@]}" "$q/screen.mp4"
cat > "$q/h264.toml" <<'TOML'
default_profile = "q"
[profiles.q]
renditions = []
video = { hls = false, ladder = [
    { size = 1080, bitrate_kbps = 4000 },
    { size = 720, bitrate_kbps = 2000 },
    { size = 360, bitrate_kbps = 600 },
] }
TOML
cat > "$q/av1.toml" <<'TOML'
default_profile = "q"
[profiles.q]
renditions = []
video = { hls = false, ladder = [
    { size = 1080, bitrate_kbps = 2000, codec = "av1" },
    { size = 720, bitrate_kbps = 1000, codec = "av1" },
    { size = 360, bitrate_kbps = 300, codec = "av1" },
] }
TOML
auto_quality=${AUTO_QUALITY:-9}
for mode in fixed auto; do
    cat > "$q/ladder-$mode.toml" <<TOML
default_profile = "q"
[profiles.q]
renditions = []
video = { hls = false, bitrate = "$mode", quality = $auto_quality, ladder = [
    { size = 1080, bitrate_kbps = 5000 },
    { size = 720, bitrate_kbps = 3000 },
    { size = 360, bitrate_kbps = 700 },
    { size = 1080, bitrate_kbps = 2500, codec = "av1" },
    { size = 720, bitrate_kbps = 1500, codec = "av1" },
    { size = 360, bitrate_kbps = 350, codec = "av1" },
] }
TOML
done
export BIN Q=$q RUNS QLEN X264_GOP=${X264_GOP:-ladder} SOURCES=${SOURCES:-pan noise screen} PARTS=${PARTS:-codecs auto}
python3 - <<'PY'
import math, os, re, statistics, subprocess, time
q, bin_, runs, qlen = os.environ["Q"], os.environ["BIN"], int(os.environ["RUNS"]), float(os.environ["QLEN"])
# The near-lossless sources are large (the noisy one ~750 MB): past the default input limit.
env = dict(os.environ, MEDIAFLOW_LOG="warn", XDG_CACHE_HOME=f"{q}/cache", XDG_DATA_HOME=f"{q}/data",
           MEDIAFLOW_LIMITS__MAX_INPUT_BYTES="8000000000")
# The sources are 30 fps: a keyframe every 60 pictures is mediaflow's 2 s grid.
GOP = [] if os.environ["X264_GOP"] == "free" else ["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"]
RUNGS = [("1080p", "1920:1080", 4000), ("720p", "1280:720", 2000), ("360p", "640:360", 600)]

def cpu(cmd):
    """Wall s and CPU s (every process of the run) of one command."""
    start, before = time.monotonic(), os.times()
    r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    after = os.times()
    if r.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {r.stderr[-2000:]}")
    return time.monotonic() - start, (after.children_user - before.children_user) + (after.children_system - before.children_system)

def x264_ladder(src, out, scale=1.0):
    split = "[0:v]split=3[a][b][c];" + ";".join(f"[{l}]scale={s}[o{i}]" for i, (l, (_, s, _)) in enumerate(zip("abc", RUNGS)))
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", src, "-filter_complex", split]
    for i, (name, _, kbps) in enumerate(RUNGS):
        cmd += ["-map", f"[o{i}]", "-c:v", "libx264", "-preset", "veryfast", "-b:v", f"{int(kbps * scale)}k"]
        cmd += GOP + [f"{out}-{name}.mp4"]
    return cpu(cmd)

def mediaflow(src, codec):
    out = f"{q}/mf-{codec}"
    subprocess.run(["rm", "-rf", out])
    return cpu([bin_, "process", src, "--out", out, "--config", f"{q}/{codec}.toml"])

def quality(path, src, size):
    r = subprocess.run(["ffmpeg", "-i", path, "-i", src, "-lavfi",
        f"[1:v]scale={size}:flags=bicubic,split[r1][r2];[0:v]split[a][b];[a][r1]psnr;[b][r2]ssim",
        "-f", "null", "-"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    p = re.search(r"PSNR.*average:([0-9.]+|inf)", r.stderr)
    s = re.search(r"SSIM.*All:([0-9.]+)", r.stderr)
    return (float(p.group(1)) if p else float("nan"), float(s.group(1)) if s else float("nan"))

def kbps(path):
    return os.path.getsize(path) * 8 / qlen / 1000

def saved(curve, psnr, rate):
    """1 - rate / x264's rate at `psnr` on `curve` [(psnr, kbps)], log-rate interpolated."""
    pts = sorted(curve)
    lo, hi = (pts[0], pts[1]) if psnr <= pts[0][0] else (pts[-2], pts[-1]) if psnr >= pts[-1][0] else \
        next((a, b) for a, b in zip(pts, pts[1:]) if a[0] <= psnr <= b[0])
    f = (psnr - lo[0]) / (hi[0] - lo[0]) if hi[0] != lo[0] else 0.0
    x = math.exp(math.log(lo[1]) + f * (math.log(hi[1]) - math.log(lo[1])))
    extrapolated = psnr < pts[0][0] or psnr > pts[-1][0]
    return 1 - rate / x, extrapolated

summary = []
SOURCES = os.environ.get("SOURCES", "pan noise screen").split()
PARTS = os.environ["PARTS"].split()
for source in SOURCES if "codecs" in PARTS else []:
    src = f"{q}/{source}.mp4"
    times = {"h264": [], "av1": [], "x264": []}
    for _ in range(runs):
        times["h264"].append(mediaflow(src, "h264"))
        times["av1"].append(mediaflow(src, "av1"))
        times["x264"].append(x264_ladder(src, f"{q}/x1"))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    curves = {name: [] for name, _, _ in RUNGS}
    for scale in (0.25, 0.5, 1.0, 2.0):
        out = f"{q}/x{scale}"
        x264_ladder(src, out, scale)
        for name, size, _ in RUNGS:
            path = f"{out}-{name}.mp4"
            curves[name].append((quality(path, src, size)[0], kbps(path)))
    print(f"\n{source}: 1080p30, {qlen:.0f} s")
    print(f"{'rung':6} {'encoder':16} {'kbit/s':>8} {'PSNR dB':>8} {'SSIM':>7} {'bits saved vs x264 at equal PSNR':>34}")
    for name, size, _ in RUNGS:
        rows = [("mediaflow H.264", f"{q}/mf-h264/{source}/{name}.mp4"),
                ("mediaflow AV1", f"{q}/mf-av1/{source}/{name}-av1.mp4"),
                ("x264 veryfast", f"{q}/x1.0-{name}.mp4")]
        for label, path in rows:
            p, s = quality(path, src, size)
            rate = kbps(path)
            sv, ext = saved(curves[name], p, rate)
            print(f"{name:6} {label:16} {rate:8.0f} {p:8.2f} {s:7.4f} {('~' if ext else '') + f'{sv * 100:+.0f} %':>34}")
            summary.append((source, name, label, sv, ext))
    print(f"ladder CPU s (wall s): mediaflow H.264 {med['h264'][1]:.1f} ({med['h264'][0]:.1f}), "
          f"mediaflow AV1 {med['av1'][1]:.1f} ({med['av1'][0]:.1f}), x264 veryfast {med['x264'][1]:.1f} ({med['x264'][0]:.1f})")
    print(f"CPU: AV1 / x264 = {med['av1'][1] / med['x264'][1]:.2f}x (goal <= 1.5), "
          f"H.264 / x264 = {med['h264'][1] / med['x264'][1]:.2f}x")
if summary:
    av1 = [sv for _, _, label, sv, _ in summary if label == "mediaflow AV1"]
    h264 = [sv for _, _, label, sv, _ in summary if label == "mediaflow H.264"]
    print(f"\nbits saved vs x264 veryfast at equal PSNR, median over sources and rungs: "
          f"AV1 {statistics.median(av1) * 100:+.0f} % (goal >= +30 %), H.264 {statistics.median(h264) * 100:+.0f} %")

# Content-aware bitrates: the same ladder, fixed and auto, in one process each.
for source in SOURCES if "auto" in PARTS else []:
    src = f"{q}/{source}.mp4"
    cpus = {}
    for mode in ("fixed", "auto"):
        out = f"{q}/mf-{mode}"
        subprocess.run(["rm", "-rf", out])
        cpus[mode] = cpu([bin_, "process", src, "--out", out, "--config", f"{q}/ladder-{mode}.toml"])
    print(f"\n{source}: content-aware (auto) against the fixed ladder, 1080p30, {qlen:.0f} s")
    print(f"{'rung':9} {'fixed kbit/s':>12} {'PSNR':>6} {'SSIM':>7} {'auto kbit/s':>12} {'PSNR':>6} {'SSIM':>7} {'bits saved':>11} {'PSNR change':>12}")
    totals = {}
    for name, size, _ in RUNGS:
        for stem, codec in ((name, "H.264"), (f"{name}-av1", "AV1")):
            (fr, fp, fs), (ar, ap, as_) = [(kbps(p),) + quality(p, src, size) for p in
                (f"{q}/mf-{m}/{source}/{stem}.mp4" for m in ("fixed", "auto"))]
            t = totals.setdefault(codec, [0.0, 0.0, []])
            t[0] += fr; t[1] += ar; t[2].append(ap - fp)
            print(f"{stem:9} {fr:12.0f} {fp:6.2f} {fs:7.4f} {ar:12.0f} {ap:6.2f} {as_:7.4f} "
                  f"{(1 - ar / fr) * 100:+10.0f} % {ap - fp:+9.2f} dB")
    for codec, (fr, ar, dp) in totals.items():
        print(f"{source} {codec} ladder: {(1 - ar / fr) * 100:+.0f} % bits, PSNR change per rung "
              f"{min(dp):+.2f} .. {max(dp):+.2f} dB")
    print(f"CPU s (wall s): fixed {cpus['fixed'][1]:.1f} ({cpus['fixed'][0]:.1f}), "
          f"auto {cpus['auto'][1]:.1f} ({cpus['auto'][0]:.1f})")
print("\ncontent-aware goals: pan >= +20 % bits saved at >= -0.5 dB; noise PSNR change >= 0 on every rung")
PY
