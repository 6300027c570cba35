//! Operating the worker, as real processes: `/metrics` scraped during and after a real job
//! shows jobs, stages, plugin calls and queue calls moving, and parses with an independent
//! parser (PyPI `prometheus_client`, the version `.ci/setup` pins); `/readyz` turns unready
//! when moto (S3/SQS) goes away and ready again once it is back with its bucket and queue;
//! every log line is JSON and the ones written inside a job carry its id; ECS task protection
//! is requested from a stand-in ECS agent on the first job and released when idle, and an
//! agent that fails never stops a job; the image's health-check script passes against the
//! real listener; a taken ops port stops the worker at start with exit code 2; hostile
//! plugins show up as traps by reason, with call durations and a memory high-water mark; with
//! `ops.emf_namespace` set, each recorded job is one CloudWatch embedded-metric-format line on
//! stdout, checked against the format's rules.

use crate::harness::{Workers, config_text, signal};
use mediaflow_tests::{Moto, encode, photo_like};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const POLL: Duration = Duration::from_millis(50);

/// Local-mode workers whose default profile `observed` runs the bundled `exif` plugin, then
/// the `slow` test plugin for `slow_ms`, then one PNG rendition.
fn local_workers(slow_ms: u64, env: Vec<(String, String)>) -> Workers {
    let w = Workers::new(
        |dir| config_text(&dir.join("data"), "visibility_timeout_secs = 10", ""),
        env,
    );
    let plugin = w.slow_plugin(slow_ms);
    w.edit_config(|c| {
        c.replace(
            "default_profile = \"small\"",
            "default_profile = \"observed\"",
        ) + &format!(
            "[profiles.observed]\nrenditions = [{{ name = \"s\", width = 48, format = \"png\" }}]\n\
                 metadata = [{{ plugin = \"exif@^1\" }}, {{ plugin = \"slow@0.1\" }}]\n\
                 [plugins]\nlocal = [\"{}\"]\n",
            plugin.display()
        )
    });
    w
}

/// Write a small PNG (or `bytes` as is) into the workers' directory and submit it.
fn submit(w: &Workers, name: &str, bytes: Option<Vec<u8>>) {
    let path = w.dir.path().join(name);
    let data = bytes.unwrap_or_else(|| encode(&photo_like(64, 40), image::ImageFormat::Png));
    std::fs::write(&path, data).expect("write source");
    let out = w
        .cmd(&["submit", &path.display().to_string()])
        .output()
        .expect("submit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `manifest.json` under `dir`.
fn manifests(dir: &Path) -> Vec<Value> {
    manifest_files(dir)
        .iter()
        .filter_map(|p| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
        .collect()
}

/// The paths of every `manifest.json` under `dir`.
fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name().is_some_and(|n| n == "manifest.json") {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    walk(dir, &mut paths);
    paths
}

/// The log lines as JSON, failing on any line that is not a JSON object.
pub(crate) fn json_lines(logs: &str) -> Vec<Value> {
    logs.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"));
            assert!(v.is_object(), "log line is not a JSON object: {l}");
            v
        })
        .collect()
}

/// The address the worker's ops listener reports in its log.
pub(crate) fn ops_addr(w: &Workers) -> SocketAddr {
    let mut found = None;
    w.wait_until("the ops listener", Duration::from_secs(30), POLL, || {
        found = w.logs().lines().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            // Event fields are flattened into the line's top level.
            let f = &v;
            f["message"]
                .as_str()?
                .starts_with("ops listener started")
                .then(|| f["addr"].as_str()?.parse().ok())?
        });
        found.is_some()
    });
    found.expect("address")
}

/// `GET path` → (status, body).
pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the ops listener");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (status, body.to_string())
}

/// Whether the image's health-check script (deploy/healthcheck.sh) passes against `addr`.
fn health_check(addr: SocketAddr) -> bool {
    Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/healthcheck.sh"
        ))
        .env("MEDIAFLOW_OPS__LISTEN", addr.to_string())
        .status()
        .expect("bash")
        .success()
}

/// Parse an exposition with `prometheus_client`'s own parser: families with their samples.
pub(crate) fn parse_exposition(text: &str) -> Vec<Value> {
    let version = Command::new("python3")
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('prometheus-client'))",
        ])
        .output()
        .expect("python3");
    let setup = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/setup"))
        .expect(".ci/setup");
    let installed = String::from_utf8_lossy(&version.stdout).trim().to_string();
    assert!(
        !installed.is_empty() && setup.contains(&format!("prometheus-client=={installed}")),
        "prometheus-client {installed:?} is not the version .ci/setup pins: run `bash .ci/setup`"
    );
    let mut child = Command::new("python3")
        .args([
            "-c",
            r#"
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation, "samples": [
        {"name": s.name, "labels": s.labels,
         "value": s.value if math.isfinite(s.value) else str(s.value)} for s in f.samples]})
print(json.dumps(out))
"#,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write exposition");
    let out = child.wait_with_output().expect("parser");
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output")
}

/// The value of the sample `name` whose labels include `labels` (None if absent).
pub(crate) fn sample(families: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families
        .iter()
        .flat_map(|f| f["samples"].as_array().into_iter().flatten())
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .and_then(|s| s["value"].as_f64())
}

/// Every histogram's buckets are cumulative and end in `+Inf` = `_count`.
fn check_histograms(families: &[Value]) {
    for f in families.iter().filter(|f| f["type"] == "histogram") {
        let name = f["name"].as_str().expect("name");
        let samples = f["samples"].as_array().expect("samples");
        let mut series: std::collections::BTreeMap<String, Vec<(String, f64)>> = Default::default();
        for s in samples
            .iter()
            .filter(|s| s["name"] == format!("{name}_bucket"))
        {
            let mut labels = s["labels"].as_object().expect("labels").clone();
            let le = labels
                .remove("le")
                .expect("le")
                .as_str()
                .expect("le")
                .to_string();
            series
                .entry(serde_json::to_string(&labels).expect("key"))
                .or_default()
                .push((le, s["value"].as_f64().expect("count")));
        }
        for (key, buckets) in series {
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{name}{key}: buckets must be cumulative: {buckets:?}"
            );
            let (last_le, last) = buckets.last().expect("a bucket");
            assert_eq!(last_le, "+Inf", "{name}{key}: the last bucket is +Inf");
            let labels: serde_json::Map<String, Value> =
                serde_json::from_str(&key).expect("labels");
            let count = samples
                .iter()
                .find(|s| {
                    s["name"] == format!("{name}_count")
                        && s["labels"] == Value::Object(labels.clone())
                })
                .and_then(|s| s["value"].as_f64())
                .expect("_count");
            assert_eq!(*last, count, "{name}{key}: +Inf bucket = _count");
        }
    }
}

/// `worker.job_timeout_secs`: a job still running past it is told to stop; while it runs on in
/// a plugin call that reaches no check (the `slow` plugin, 10 s against a 3 s limit), the
/// worker says it is unhealthy — `/healthz` and `/readyz` 503 naming the job, so the image's
/// health check fails — and healthy again once the job stops; the job is recorded as failed
/// (`timed_out`), nothing of it stored but its manifest, and the worker goes on.
#[test]
fn a_job_past_its_time_limit_fails_as_timed_out_and_while_stuck_the_worker_is_unhealthy() {
    let w = local_workers(10_000, Vec::new());
    w.edit_config(|c| {
        c.replace(
            "poll_interval_ms = 50",
            "poll_interval_ms = 50\njob_timeout_secs = 3",
        )
    });
    let mut worker = w.spawn();
    let addr = ops_addr(&w);
    w.wait_until("ready", Duration::from_secs(60), POLL, || {
        get(addr, "/readyz").0 == 200
    });
    submit(&w, "slow.png", None);
    let mut unhealthy = None;
    w.wait_until("/healthz 503", Duration::from_secs(60), POLL, || {
        let (status, body) = get(addr, "/healthz");
        if status == 503 {
            unhealthy = Some(body);
        }
        unhealthy.is_some()
    });
    let why = unhealthy.unwrap_or_default();
    assert!(
        why.contains("did not stop when told") && why.contains("job_timeout_secs (3 s)"),
        "{why}"
    );
    let (ready, body) = get(addr, "/readyz");
    assert_eq!(ready, 503, "{body}");
    let check = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/healthcheck.sh"
        ))
        .env("MEDIAFLOW_OPS__LISTEN", addr.to_string())
        .status()
        .expect("bash");
    assert!(
        !check.success(),
        "the health check fails while a job is stuck"
    );
    w.wait_until("healthy again", Duration::from_secs(60), POLL, || {
        get(addr, "/healthz").0 == 200
    });
    w.wait_until("the manifest", Duration::from_secs(30), POLL, || {
        !manifests(w.dir.path()).is_empty()
    });
    let m = manifests(w.dir.path());
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["status"], "failed", "{}", m[0]);
    assert_eq!(m[0]["error"]["code"], "timed_out", "{}", m[0]);
    assert!(
        m[0]["outputs"].as_array().is_none_or(|o| o.is_empty()),
        "{}",
        m[0]
    );
    let logs = w.logs();
    let lines = json_lines(&logs);
    assert!(
        lines
            .iter()
            .any(|l| l["error_code"] == "job_stuck" && l["level"] == "ERROR"),
        "{logs}"
    );
    // Still working: the process is up and answers.
    assert!(worker.try_wait().expect("try_wait").is_none(), "{logs}");
    assert_eq!(get(addr, "/readyz").0, 200);
    signal(&worker, libc::SIGTERM);
    assert_eq!(w.wait_exit(&mut worker, Duration::from_secs(20)), 0);
}

#[test]
fn metrics_move_during_a_real_job_and_parse_with_prometheus_client() {
    let w = local_workers(1_500, Vec::new());
    let mut worker = w.spawn();
    let addr = ops_addr(&w);
    w.wait_until("ready", Duration::from_secs(30), POLL, || {
        get(addr, "/readyz").0 == 200
    });
    // The image's health check script passes against the real listener.
    assert!(health_check(addr), "deploy/healthcheck.sh against {addr}");
    // Idle: the worker polls its queue (the first receive may follow readiness by a moment).
    let mut idle = String::new();
    w.wait_until(
        "an idle worker's receive",
        Duration::from_secs(10),
        POLL,
        || {
            let (status, text) = get(addr, "/metrics");
            assert_eq!(status, 200);
            idle = text;
            idle.contains("mediaflow_queue_requests_total{operation=\"receive\"}")
        },
    );
    let before = parse_exposition(&idle);
    assert_eq!(sample(&before, "mediaflow_jobs_in_flight", &[]), Some(0.0));
    for family in [
        "mediaflow_jobs",
        "mediaflow_job_duration_seconds",
        "mediaflow_stage_duration_seconds",
        "mediaflow_plugin_calls",
        "mediaflow_plugin_call_duration_seconds",
        "mediaflow_plugin_memory_high_water_bytes",
        "mediaflow_queue_requests",
        "mediaflow_queue_errors",
    ] {
        let f = before
            .iter()
            .find(|f| f["name"] == family)
            .unwrap_or_else(|| panic!("{family} is exposed (HELP/TYPE) even before any job"));
        assert!(
            !f["help"].as_str().unwrap_or_default().is_empty(),
            "{family} has help"
        );
    }
    assert!(
        sample(
            &before,
            "mediaflow_queue_requests_total",
            &[("operation", "receive")]
        )
        .is_some_and(|n| n >= 1.0),
        "the idle worker polls"
    );

    submit(&w, "observed.png", None);
    // During the job (the slow plugin holds it for 1.5 s): one in flight, exif already called,
    // the job not yet recorded.
    let mut during = String::new();
    w.wait_until(
        "a scrape during the job",
        Duration::from_secs(20),
        POLL,
        || {
            during = get(addr, "/metrics").1;
            during.contains("\nmediaflow_jobs_in_flight 1\n")
                && during.contains("mediaflow_plugin_calls_total{plugin=\"exif\"")
                && !during.contains("mediaflow_jobs_total{")
        },
    );
    let mid = parse_exposition(&during);
    assert_eq!(sample(&mid, "mediaflow_jobs_in_flight", &[]), Some(1.0));
    assert!(
        sample(
            &mid,
            "mediaflow_queue_messages_total",
            &[("operation", "receive")]
        ) >= Some(1.0)
    );
    assert_eq!(
        sample(
            &mid,
            "mediaflow_plugin_calls_total",
            &[("plugin", "exif"), ("outcome", "ok")]
        ),
        Some(1.0),
        "exif ran before the slow plugin"
    );
    assert_eq!(
        sample(&mid, "mediaflow_jobs_total", &[("status", "succeeded")]),
        None
    );

    // After: the job is counted, its stages observed, the message deleted.
    let mut after = Vec::new();
    w.wait_until(
        "the job counted and its message deleted",
        Duration::from_secs(20),
        POLL,
        || {
            let text = get(addr, "/metrics").1;
            if !(text.contains("\nmediaflow_jobs_in_flight 0\n")
                && text.contains("mediaflow_queue_messages_total{operation=\"delete\"} 1\n"))
            {
                return false;
            }
            after = parse_exposition(&text);
            true
        },
    );
    let m = manifests(w.dir.path());
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["status"], "succeeded", "{}", m[0]);
    let observed = [("profile", "observed")];
    assert_eq!(
        sample(
            &after,
            "mediaflow_jobs_total",
            &[("status", "succeeded"), ("profile", "observed")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "mediaflow_messages_total", &[("outcome", "done")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "mediaflow_job_duration_seconds_count", &observed),
        Some(1.0)
    );
    let total_s = m[0]["timings_ms"]["total"].as_f64().expect("total") / 1e3;
    let sum = sample(&after, "mediaflow_job_duration_seconds_sum", &observed).expect("sum");
    assert!(
        (sum - total_s).abs() < 1e-6,
        "job duration = the manifest's total: {sum} vs {total_s}"
    );
    for stage in ["fetch", "hash", "probe", "metadata", "decode", "upload"] {
        assert_eq!(
            sample(
                &after,
                "mediaflow_stage_duration_seconds_count",
                &[("stage", stage), ("profile", "observed")]
            ),
            Some(1.0),
            "stage {stage} observed once: {:?}",
            m[0]["timings_ms"]
        );
    }
    let metadata_s = sample(
        &after,
        "mediaflow_stage_duration_seconds_sum",
        &[("stage", "metadata"), ("profile", "observed")],
    )
    .expect("metadata");
    assert!(
        metadata_s >= 1.5,
        "the metadata stage includes the slow plugin: {metadata_s}"
    );
    let slow = [("plugin", "slow"), ("version", "0.1.0")];
    assert_eq!(
        sample(
            &after,
            "mediaflow_plugin_calls_total",
            &[slow[0], slow[1], ("outcome", "ok")]
        ),
        Some(1.0)
    );
    let slow_s = sample(&after, "mediaflow_plugin_call_duration_seconds_sum", &slow).expect("slow");
    assert!(
        (1.5..10.0).contains(&slow_s),
        "slow plugin call took {slow_s} s"
    );
    assert!(sample(&after, "mediaflow_plugin_memory_high_water_bytes", &slow) > Some(0.0));
    assert!(
        sample(
            &after,
            "mediaflow_queue_requests_total",
            &[("operation", "delete")]
        ) >= Some(1.0)
    );
    assert_eq!(
        sample(
            &after,
            "mediaflow_plugin_traps_total",
            &[("plugin", "slow")]
        ),
        None
    );
    check_histograms(&after);

    w.stop_all(&mut [&mut worker], Duration::from_secs(20));
}

#[test]
fn readyz_follows_moto_going_away_and_coming_back() {
    let moto = Moto::start();
    let port: u16 = moto
        .endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("moto port");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let create = |moto: &Moto| -> String {
        rt.block_on(async {
            let (s3, sqs) = moto.clients().await;
            s3.create_bucket()
                .bucket("renditions")
                .send()
                .await
                .expect("bucket");
            let q = sqs
                .create_queue()
                .queue_name("jobs")
                .send()
                .await
                .expect("queue");
            q.queue_url().expect("url").to_string()
        })
    };
    let queue_url = create(&moto);
    let env = moto
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let w = Workers::new(
        |dir| {
            config_text(
                &dir.join("data"),
                &format!(
                    "queue_url = \"{queue_url}\"\ns3_path_style = true\nreceive_wait_secs = 1"
                ),
                "[ops]\nreadiness_cache_ms = 100\nreadiness_timeout_ms = 1500\n",
            )
        },
        env,
    );
    let mut worker = w.spawn();
    let addr = ops_addr(&w);
    let t = Instant::now();
    w.wait_until("ready with moto up", Duration::from_secs(30), POLL, || {
        get(addr, "/readyz") == (200, "ready\n".into())
    });
    let ready_after = t.elapsed();

    drop(moto);
    let mut why = String::new();
    w.wait_until(
        "unready with moto gone",
        Duration::from_secs(20),
        POLL,
        || {
            let (status, body) = get(addr, "/readyz");
            why = body;
            status == 503
        },
    );
    assert!(
        why.contains(&format!("queue {queue_url}")) && why.contains("bucket renditions"),
        "both the queue and the bucket are named: {why}"
    );
    assert_eq!(get(addr, "/healthz").0, 200, "alive while unready");

    let moto = Moto::start_on(port);
    // Back, but empty: moto keeps nothing across restarts, so still not ready.
    let mut empty = String::new();
    w.wait_until(
        "moto answering, still unready",
        Duration::from_secs(20),
        POLL,
        || {
            let (status, body) = get(addr, "/readyz");
            assert_eq!(status, 503, "no queue or bucket yet: {body}");
            empty = body;
            !empty.contains("Connection refused") && !empty.contains("no answer")
        },
    );
    assert!(
        empty.contains("NonExistentQueue") && empty.contains("bucket renditions: NotFound"),
        "moto's own answers: {empty}"
    );
    assert_eq!(create(&moto), queue_url, "the same queue URL again");
    w.wait_until("ready again", Duration::from_secs(20), POLL, || {
        get(addr, "/readyz").0 == 200
    });
    assert!(
        worker.try_wait().expect("try_wait").is_none(),
        "the worker kept running"
    );
    json_lines(&w.logs());
    w.stop_all(&mut [&mut worker], Duration::from_secs(20));
    eprintln!(
        "readyz: ready {ready_after:?} after start; moto gone: {why}moto back, empty: {empty}"
    );
}

#[test]
fn log_lines_are_json_and_lines_inside_a_job_carry_its_id() {
    let w = local_workers(10, Vec::new());
    let mut worker = w.spawn();
    submit(&w, "good.png", None);
    submit(
        &w,
        "corrupt.png",
        Some(b"\x89PNG\r\n\x1a\nthis is not a png".to_vec()),
    );
    w.wait_until("two manifests", Duration::from_secs(30), POLL, || {
        manifests(w.dir.path()).len() == 2
    });
    signal(&worker, libc::SIGTERM);
    assert_eq!(w.wait_exit(&mut worker, Duration::from_secs(20)), 0);

    let lines = json_lines(&w.logs());
    for l in &lines {
        assert!(
            l["timestamp"].is_string() && l["level"].is_string() && l["message"].is_string(),
            "timestamp, level and message: {l}"
        );
    }
    let ids: std::collections::BTreeSet<String> = manifests(w.dir.path())
        .iter()
        .map(|m| m["job_id"].as_str().expect("job_id").to_string())
        .collect();
    let job_of = |l: &Value| -> Option<String> {
        l["spans"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "job")
            .map(|s| s["job_id"].as_str().unwrap_or("(no job_id)").to_string())
    };
    // Every line inside a job span names the job, and those are exactly the recorded jobs.
    let in_jobs: Vec<(String, &Value)> =
        lines.iter().filter_map(|l| Some((job_of(l)?, l))).collect();
    let seen: std::collections::BTreeSet<String> =
        in_jobs.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(seen, ids, "job ids in the log = job ids of the manifests");
    for (id, l) in &in_jobs {
        assert_eq!(
            l["span"]["job_id"],
            id.as_str(),
            "the innermost span is the job: {l}"
        );
        assert!(
            l["span"]["source"]
                .as_str()
                .is_some_and(|s| s.contains(".png")),
            "{l}"
        );
        assert_eq!(l["span"]["profile"], "observed", "{l}");
        assert!(
            message_of(l).is_some(),
            "a job line also names its queue message: {l}"
        );
    }
    // The lines that report on a job all come from inside one.
    for what in ["job recorded", "job failed"] {
        let reports: Vec<&Value> = lines
            .iter()
            .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with(what)))
            .collect();
        assert!(!reports.is_empty(), "a {what:?} line");
        for l in reports {
            assert!(
                job_of(l).is_some_and(|id| ids.contains(&id)),
                "{what:?} outside a job: {l}"
            );
        }
    }
}

/// The queue message id of the `message` span a line was written in.
fn message_of(l: &Value) -> Option<String> {
    l["spans"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == "message")
        .and_then(|s| s["message_id"].as_str())
        .map(str::to_string)
}

/// A stand-in ECS agent: records (when, request line, body) and answers each request with
/// `answer()` at that moment.
struct FakeAgent {
    uri: String,
    seen: Arc<Mutex<Vec<(SystemTime, String, String)>>>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeAgent {
    fn start() -> FakeAgent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (log, fail) = (seen.clone(), failing.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { break };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                let (line, body) = loop {
                    let n = s.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break (String::new(), String::new());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        if body.len() >= len {
                            break (
                                head.lines().next().unwrap_or_default().to_string(),
                                body.to_string(),
                            );
                        }
                    }
                };
                log.lock()
                    .expect("log")
                    .push((SystemTime::now(), line, body));
                let answer = if fail.load(std::sync::atomic::Ordering::SeqCst) {
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\nno".to_string()
                } else {
                    let body = r#"{"protection":{"ExpirationDate":"2030-01-01T00:00:00Z","ProtectionEnabled":true,"TaskArn":"arn:aws:ecs:us-east-1:000000000000:task/c/t"}}"#;
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = s.write_all(answer.as_bytes());
            }
        });
        FakeAgent {
            uri: format!("http://{addr}/api/task-0123"),
            seen,
            failing,
        }
    }

    fn requests(&self) -> Vec<(SystemTime, String, String)> {
        self.seen.lock().expect("log").clone()
    }
}

#[test]
fn task_protection_is_requested_on_the_first_job_and_released_when_idle() {
    let agent = FakeAgent::start();
    let w = local_workers(
        800,
        vec![
            ("ECS_AGENT_URI".into(), agent.uri.clone()),
            ("MEDIAFLOW_OPS__TASK_PROTECTION_MINUTES".into(), "7".into()),
            (
                "MEDIAFLOW_OPS__TASK_PROTECTION_RELEASE_MS".into(),
                "200".into(),
            ),
        ],
    );
    let mut worker: Child = w.spawn();
    let addr = ops_addr(&w);
    w.wait_until("ready", Duration::from_secs(30), POLL, || {
        get(addr, "/readyz").0 == 200
    });
    assert!(
        agent.requests().is_empty(),
        "an idle worker asks for nothing"
    );

    submit(&w, "first.png", None);
    w.wait_until(
        "protection requested",
        Duration::from_secs(20),
        POLL,
        || !agent.requests().is_empty(),
    );
    let first = agent.requests()[0].clone();
    assert_eq!(
        first.1,
        "PUT /api/task-0123/task-protection/v1/state HTTP/1.1"
    );
    assert_eq!(
        first.2,
        r#"{"ProtectionEnabled":true,"ExpiresInMinutes":7}"#
    );

    w.wait_until("protection released", Duration::from_secs(20), POLL, || {
        agent.requests().len() >= 2
    });
    let done_at = SystemTime::now();
    let requests = agent.requests();
    assert_eq!(requests.len(), 2, "one protect, one release: {requests:?}");
    assert_eq!(requests[1].2, r#"{"ProtectionEnabled":false}"#);
    let recorded = manifest_files(w.dir.path());
    assert_eq!(recorded.len(), 1);
    let recorded_at = std::fs::metadata(&recorded[0])
        .and_then(|m| m.modified())
        .expect("manifest mtime");
    assert!(
        requests[0].0 < recorded_at && recorded_at <= requests[1].0,
        "protected before the job was recorded, released after"
    );
    let metrics = parse_exposition(&get(addr, "/metrics").1);
    for state in ["on", "off"] {
        assert_eq!(
            sample(
                &metrics,
                "mediaflow_task_protection_requests_total",
                &[("protection", state), ("result", "ok")]
            ),
            Some(1.0)
        );
    }
    assert_eq!(sample(&metrics, "mediaflow_task_protected", &[]), Some(0.0));

    // An agent that fails never stops a job: the worker logs it, retries, and goes on.
    agent
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    submit(&w, "second.png", None);
    w.wait_until("the second job", Duration::from_secs(20), POLL, || {
        manifests(w.dir.path()).len() == 2
    });
    assert!(
        manifests(w.dir.path())
            .iter()
            .all(|m| m["status"] == "succeeded"),
        "both jobs succeeded"
    );
    let later: Vec<_> = agent
        .requests()
        .into_iter()
        .filter(|r| r.0 > done_at)
        .collect();
    assert!(
        !later.is_empty() && later.iter().all(|r| r.2.contains("true")),
        "protect tried, nothing to release: {later:?}"
    );
    assert!(
        json_lines(&w.logs())
            .iter()
            .any(|l| l["error_code"] == "task_protection_failed"),
        "the failure is logged"
    );
    w.stop_all(&mut [&mut worker], Duration::from_secs(20));
}

#[test]
fn a_worker_whose_ops_port_is_taken_stops_at_start_with_exit_2() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let w = Workers::new(|dir| config_text(&dir.join("data"), "", ""), Vec::new());
    let mut worker = w.spawn_with(&[("MEDIAFLOW_OPS__LISTEN", &format!("127.0.0.1:{port}"))]);
    assert_eq!(w.wait_exit(&mut worker, Duration::from_secs(20)), 2);
    let logs = w.logs();
    assert!(
        logs.contains(&format!("ops.listen 127.0.0.1:{port}"))
            && logs.contains("MEDIAFLOW_OPS__LISTEN"),
        "the error names the setting and how to change it: {logs}"
    );
}

#[test]
fn plugin_traps_limits_duration_and_memory_high_water_are_counted() {
    use mediaflow::plugin::{PluginLimits, PluginSpec, SourceHandle};
    use mediaflow::telemetry::metrics::{
        PLUGIN_CALLS, PLUGIN_MEMORY_HIGH_WATER, PLUGIN_TRAPS, render,
    };
    use mediaflow_tests::{guest, programs};
    let (host, _dir) = mediaflow_tests::host();
    let info = crate::image_info("file:///x", "jpeg", 1, 1, 4);
    let source = SourceHandle::from_bytes(vec![0xFF, 0xD8, 0xFF, 0xD9]);
    // Names of their own: the registry is process-wide, and other tests run these guests too.
    let mut bomb = PluginSpec::new("ops-memory-bomb", "0.2.0");
    bomb.limits = PluginLimits {
        memory_bytes: 32 * 1024 * 1024,
        ..PluginLimits::default()
    };
    let mut spin = PluginSpec::new("ops-spin", "0.2.0");
    spin.limits = PluginLimits {
        timeout_ms: 100,
        ..PluginLimits::default()
    };
    let bomb = guest(&host, programs::MEMORY_BOMB, bomb).expect("load");
    let spin = guest(&host, programs::SPIN, spin).expect("load");
    bomb.extract(&info, &source).expect_err("capped");
    spin.extract(&info, &source).expect_err("stopped");

    let b = ["ops-memory-bomb", "0.2.0"];
    assert_eq!(PLUGIN_CALLS.get(&[b[0], b[1], "memory_limit"]), 1.0);
    assert_eq!(PLUGIN_TRAPS.get(&[b[0], b[1], "memory_limit"]), 1.0);
    let high = PLUGIN_MEMORY_HIGH_WATER.get(&b);
    assert!(
        high > 1024.0 * 1024.0 && high <= 32.0 * 1024.0 * 1024.0,
        "high water {high}: grown towards the cap, never past it"
    );
    let s = ["ops-spin", "0.2.0"];
    assert_eq!(PLUGIN_TRAPS.get(&[s[0], s[1], "timeout"]), 1.0);
    let families = parse_exposition(&render());
    let spin = [("plugin", s[0]), ("version", s[1])];
    let calls = sample(
        &families,
        "mediaflow_plugin_call_duration_seconds_count",
        &spin,
    );
    let secs = sample(
        &families,
        "mediaflow_plugin_call_duration_seconds_sum",
        &spin,
    )
    .unwrap_or_default();
    assert!(
        calls == Some(1.0) && (0.1..2.0).contains(&secs),
        "{calls:?} calls, {secs} s"
    );
    assert_eq!(
        sample(
            &families,
            "mediaflow_plugin_traps_total",
            &[("plugin", "ops-spin"), ("reason", "timeout")]
        ),
        Some(1.0)
    );
    check_histograms(&families);
}

/// The units CloudWatch accepts in an EMF metric definition.
const EMF_UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Check `doc` against the rules of CloudWatch's embedded metric format specification: the
/// `_aws` member with a millisecond timestamp and metric directives, each dimension a
/// top-level string member, each metric a top-level number with a known unit.
fn check_emf(doc: &Value, since_ms: u128) {
    let aws = &doc["_aws"];
    let ts = aws["Timestamp"]
        .as_u64()
        .expect("_aws.Timestamp: integer ms") as u128;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    assert!(
        since_ms <= ts && ts <= now,
        "timestamp {ts} in [{since_ms}, {now}]"
    );
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics");
    assert!(!directives.is_empty());
    for d in directives {
        let ns = d["Namespace"].as_str().expect("Namespace");
        assert!(
            (1..=255).contains(&ns.len())
                && ns
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-/#:".contains(c)),
            "namespace {ns:?}"
        );
        for set in d["Dimensions"].as_array().expect("Dimensions") {
            let set = set.as_array().expect("a dimension set");
            assert!(set.len() <= 30, "{set:?}");
            for key in set {
                let key = key.as_str().expect("dimension key");
                assert!(
                    doc[key].is_string(),
                    "dimension {key} is a top-level string: {doc}"
                );
            }
        }
        let metrics = d["Metrics"].as_array().expect("Metrics");
        assert!((1..=100).contains(&metrics.len()));
        for m in metrics {
            let name = m["Name"].as_str().expect("Name");
            assert!(
                doc[name].is_number(),
                "metric {name} is a top-level number: {doc}"
            );
            let unit = m["Unit"].as_str().unwrap_or("None");
            assert!(EMF_UNITS.contains(&unit), "unit {unit}");
        }
    }
}

#[test]
fn job_metrics_reach_stdout_in_cloudwatch_embedded_metric_format() {
    let w = Workers::new(|dir| config_text(&dir.join("data"), "", ""), Vec::new());
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    let stdout = w.dir.path().join("stdout.txt");
    let mut worker = w
        .cmd(&["worker"])
        .env("MEDIAFLOW_OPS__EMF_NAMESPACE", "mediaflow/test-stack")
        .stdout(std::fs::File::create(&stdout).expect("stdout file"))
        .stderr(std::fs::File::create(w.dir.path().join("worker-emf.log")).expect("log"))
        .spawn()
        .expect("worker");
    submit(&w, "fine.png", None);
    submit(
        &w,
        "broken.png",
        Some(b"\x89PNG\r\n\x1a\n not really".to_vec()),
    );
    let lines = || -> Vec<Value> {
        std::fs::read_to_string(&stdout)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    w.wait_until("two EMF lines", Duration::from_secs(60), POLL, || {
        lines().len() >= 2
    });
    signal(&worker, libc::SIGTERM);
    assert!(worker.wait().expect("exit").success(), "{}", w.logs());
    // Nothing but EMF on stdout (the logs are on stderr).
    let text = std::fs::read_to_string(&stdout).expect("stdout");
    let docs = json_lines(&text);
    assert_eq!(docs.len(), 2, "{text}");
    for d in &docs {
        check_emf(d, since);
        let directive = &d["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "mediaflow/test-stack");
        assert_eq!(d["Profile"], "small");
        assert_eq!(d["Jobs"], 1);
        assert!(d["JobDuration"].as_f64().is_some_and(|ms| ms > 0.0), "{d}");
        assert!(d["job_id"].as_str().is_some_and(|s| !s.is_empty()), "{d}");
    }
    let mut statuses: Vec<&str> = docs.iter().filter_map(|d| d["Status"].as_str()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, ["failed", "succeeded"]);
    let failed = docs
        .iter()
        .find(|d| d["Status"] == "failed")
        .expect("failed");
    assert!(failed["error_code"].is_string(), "{failed}");
    assert!(
        failed["source"]
            .as_str()
            .is_some_and(|s| s.ends_with("broken.png"))
    );
}
