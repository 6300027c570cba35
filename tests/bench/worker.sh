#!/usr/bin/env bash
# Worker throughput, side by side in one run: trivial-profile jobs per second through the
# embedded local queue and through SQS/S3 (moto on 127.0.0.1), with 1 and 2 worker processes,
# and the engine's own overhead per job (wall time per job minus the pipeline's own time); and
# what the job index (SQLite, written at every state change) costs: local mode with and without.
#
#   bash tests/bench/worker.sh            # JOBS=2000 (local), MOTO_JOBS=60 (moto is slow)
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS=${JOBS:-2000}
MOTO_JOBS=${MOTO_JOBS:-60}
bash .ci/setup
cargo build --release -q -p mediaflow
export BIN=$PWD/target/release/mediaflow JOBS MOTO_JOBS
python3 - <<'PY'
import glob, json, os, socket, struct, subprocess, tempfile, time, zlib

BIN, JOBS, MOTO_JOBS = os.environ["BIN"], int(os.environ["JOBS"]), int(os.environ["MOTO_JOBS"])
PROFILE = 'default_profile = "trivial"\n[profiles.trivial]\nrenditions = [{ name = "t", width = 8, format = "png" }]\n'

def png(seed):
    raw = b"".join(b"\0" + bytes((x * 7 + y + seed) % 256 for x in range(48)) for y in range(16))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")

def run_workers(n, env, done, total):
    # Each worker's ops listener on a free port (the default 9090 fits one worker per machine).
    env = dict(os.environ, MEDIAFLOW_LOG="warn", MEDIAFLOW_OPS__LISTEN="127.0.0.1:0", **env)
    t = time.monotonic()
    procs = [subprocess.Popen([BIN, "worker", "--config", "mf.toml"], env=env, stderr=subprocess.DEVNULL) for _ in range(n)]
    while done() < total:
        time.sleep(0.02)
        if time.monotonic() - t > 600:
            raise SystemExit("timed out")
    wall = time.monotonic() - t
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()
    return wall

def local(n, env=None):
    d = tempfile.mkdtemp()
    os.chdir(d)
    open("mf.toml", "w").write(PROFILE + '[worker]\ndata_dir = "data"\npoll_interval_ms = 20\n')
    os.makedirs("in")
    for i in range(JOBS):
        open(f"in/j{i:04}.png", "wb").write(png(i))
    subprocess.run([BIN, "submit", *sorted(glob.glob("in/*.png")), "--config", "mf.toml"], check=True, stdout=subprocess.DEVNULL)
    manifests = lambda: glob.glob("data/buckets/renditions/**/manifest.json", recursive=True)
    wall = run_workers(n, env or {}, lambda: len(manifests()), JOBS)
    pipeline_ms = sum(json.load(open(m))["timings_ms"]["total"] for m in manifests())
    return wall, JOBS, pipeline_ms

def moto(n):
    import boto3  # installed with moto
    port = socket.socket(); port.bind(("127.0.0.1", 0)); p = port.getsockname()[1]; port.close()
    server = subprocess.Popen(["python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", str(p)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{p}"
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", p), 0.2).close(); break
            except OSError:
                time.sleep(0.05)
        env = dict(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
        kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
        s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
        for b in ("uploads", "renditions"):
            s3.create_bucket(Bucket=b)
        url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(Bucket="uploads", NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
        for i in range(MOTO_JOBS):
            s3.put_object(Bucket="uploads", Key=f"j{i:04}.png", Body=png(i))
        d = tempfile.mkdtemp(); os.chdir(d)
        open("mf.toml", "w").write(PROFILE + f'[worker]\nqueue_url = "{url}"\ns3_path_style = true\n')
        def done():
            keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="renditions") for o in page.get("Contents", [])]
            return sum(k.endswith("manifest.json") for k in keys)
        wall = run_workers(n, env, done, MOTO_JOBS)
        return wall, MOTO_JOBS, None
    finally:
        server.terminate(); server.wait()

import statistics
no_index = lambda n: local(n, {"MEDIAFLOW_API__LOCAL_INDEX": "false"})
rates = {}
print(f"{'backend':<16} {'workers':>7} {'jobs':>5} {'wall s':>7} {'jobs/s':>7} {'overhead ms/job':>16}")
for name, f, runs in (("local", local, 3), ("local, no index", no_index, 3), ("moto", moto, 1)):
    for n in (1, 2):
        results = [f(n) for _ in range(runs)]
        wall, jobs, pipeline_ms = sorted(results, key=lambda r: r[0])[len(results) // 2]
        rates[(name, n)] = jobs / wall
        overhead = "" if pipeline_ms is None else f"{(wall * 1000 - pipeline_ms / max(n, 1)) / jobs:.2f}"
        print(f"{name:<16} {n:>7} {jobs:>5} {wall:>7.2f} {jobs / wall:>7.1f} {overhead:>16}")
for n in (1, 2):
    ratio = rates[("local", n)] / rates[("local, no index", n)]
    print(f"job index cost, {n} worker(s): throughput with the index = {ratio:.2f}x without (median of 3; goal: cost < 10 %)")
print("\nwall time includes worker start-up; goal: ≥ 200 trivial jobs/s through the local queue")
PY
