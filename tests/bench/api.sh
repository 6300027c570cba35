#!/usr/bin/env bash
# The job API under load, on the local (SQLite) index: requests per second and latency
# percentiles of `GET /v1/jobs/{id}`, `GET /v1/jobs` (a page of 20) and `POST /v1/uploads`,
# from wrk on 127.0.0.1 against `mediaflow serve --no-worker` (release build), 2 connections per
# core, 10 s each, three runs, medians printed. wrk shares the machine's cores with the server,
# as a load generator on the same host does. Goal on 2 cores: ≥ 2,000 GET/s at p99 < 20 ms.
#
#   bash tests/bench/api.sh            # JOBS=2000 jobs in the index first; DURATION=10
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS=${JOBS:-2000}
DURATION=${DURATION:-10}
bash .ci/setup
if ! command -v wrk >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
cargo build --release -q -p mediaflow
BIN=$PWD/target/release/mediaflow
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$dir/mf.toml" <<EOF
[worker]
data_dir = "$dir/data"
[api]
listen = "127.0.0.1:$port"
EOF
MEDIAFLOW_LOG=warn "$BIN" serve --no-worker --config "$dir/mf.toml" 2>"$dir/serve.log" &
base="http://127.0.0.1:$port"
for _ in $(seq 200); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.05; done

# Fill the index through the API itself.
python3 - "$base" "$JOBS" > "$dir/id" <<'PY'
import json, sys, urllib.request
base, n = sys.argv[1], int(sys.argv[2])
body = json.dumps({"filename": "a.jpg", "content_type": "image/jpeg", "bytes": 1000}).encode()
last = None
for _ in range(n):
    req = urllib.request.Request(base + "/v1/uploads", body, {"Content-Type": "application/json"})
    last = json.load(urllib.request.urlopen(req))["job_id"]
print(last)
PY
id=$(cat "$dir/id")
cat > "$dir/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"filename": "a.jpg", "content_type": "image/jpeg", "bytes": 1000}'
EOF

conns=$(( $(nproc) * 2 ))
run() {  # name, wrk args…: three runs; median req/s, p50, p99 (ms)
    local name=$1; shift
    for i in 1 2 3; do
        wrk -t "$(nproc)" -c "$conns" -d "${DURATION}s" --latency "$@" | python3 -c '
import re, sys
text = sys.stdin.read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
def ms(p):
    m = re.search(r"^\s+" + p + r"%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(rps, ms("50"), ms("99"), non2xx.group(1) if non2xx else 0)'
    done | sort -n | sed -n 2p | { read -r rps p50 p99 bad; printf "%-26s %9.0f %9.2f %9.2f %8s\n" "$name" "$rps" "$p50" "$p99" "$bad"; }
}
echo "index: $JOBS jobs (SQLite); wrk: $(nproc) threads, $conns connections, ${DURATION}s × 3, median run"
printf "%-26s %9s %9s %9s %8s\n" endpoint "req/s" "p50 ms" "p99 ms" "non-2xx"
run "GET /v1/jobs/{id}" "$base/v1/jobs/$id"
run "GET /v1/jobs (20)" "$base/v1/jobs"
run "POST /v1/uploads" -s "$dir/post.lua" "$base/v1/uploads"
echo "goal on 2 cores: GET /v1/jobs/{id} ≥ 2000 req/s at p99 < 20 ms"
