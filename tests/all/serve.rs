//! `mediaflow serve` in local mode as a real process (its worker in the same process), driven
//! with curl as a client would: an upload through the URL the API returned, the job followed to
//! `succeeded` and its outputs downloaded; an explicit job with an idempotency key; a plain
//! `submit` showing up in the index; a running video job followed over Server-Sent Events and
//! cancelled; an expired upload; API keys (401/403, revoked, scopes); tokens bound to one job;
//! hostile requests each refused with a clear 4xx and nothing written.

use crate::harness::{Workers, config_text};
use mediaflow_tests::{encode, photo_like};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A `serve` process and its directory.
struct Serve {
    workers: Workers,
    base: String,
    child: Child,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Serve {
    /// `serve` with the shared test config plus `api_extra` in `[api]` and `extra` after.
    fn start(api_extra: &str, extra: &str) -> Serve {
        Self::start_with(
            "visibility_timeout_secs = 30\nmax_receive_count = 3",
            api_extra,
            extra,
        )
    }

    /// `worker_extra` in `[worker]`, `api_extra` in `[api]`, `extra` after.
    fn start_with(worker_extra: &str, api_extra: &str, extra: &str) -> Serve {
        let port = free_port();
        let workers = Workers::new(
            |dir| {
                config_text(
                    &dir.join("data"),
                    worker_extra,
                    &format!(
                        "[api]\nlisten = \"127.0.0.1:{port}\"\nprogress_interval_ms = 200\n{api_extra}\n{extra}"
                    ),
                )
            },
            Vec::new(),
        );
        let child = workers.spawn_args(&["serve"], &[]);
        let base = format!("http://127.0.0.1:{port}");
        let s = Serve {
            workers,
            base,
            child,
        };
        s.wait_ready();
        s
    }

    fn wait_ready(&self) {
        let s = self;
        s.workers.wait_until(
            "serve answers",
            Duration::from_secs(60),
            Duration::from_millis(50),
            || curl(&["-o", "/dev/null", &format!("{}/healthz", s.base)]).0 == 200,
        );
    }

    fn data(&self) -> PathBuf {
        self.workers.dir.path().join("data")
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.workers.dir.path().join(name);
        std::fs::write(&p, bytes).expect("write");
        p
    }

    /// `curl` against the API with `key` (if any); status and JSON body.
    fn call(
        &self,
        key: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&str>,
        extra: &[&str],
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let auth = key.map(|k| format!("Authorization: Bearer {k}"));
        let mut args = vec!["-X", method, &url];
        if let Some(a) = &auth {
            args.extend(["-H", a.as_str()]);
        }
        if let Some(b) = body {
            args.extend(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        args.extend(extra);
        let (status, out) = curl(&args);
        (status, serde_json::from_slice(&out).unwrap_or(Value::Null))
    }

    /// The job as `mediaflow jobs show` reads it from the index (no server needed).
    fn job_offline(&self, id: &str) -> Value {
        let out = self
            .workers
            .cmd(&["jobs", "show", id])
            .output()
            .expect("jobs show");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("job JSON")
    }

    fn job(&self, key: Option<&str>, id: &str) -> Value {
        let (status, job) = self.call(key, "GET", &format!("/v1/jobs/{id}"), None, &[]);
        assert_eq!(status, 200, "{job}");
        job
    }

    fn wait_status(&self, key: Option<&str>, id: &str, want: &str, within: Duration) -> Value {
        let mut last = Value::Null;
        self.workers.wait_until(
            &format!("job {id} {want}"),
            within,
            Duration::from_millis(100),
            || {
                last = self.job(key, id);
                last["status"] == want
            },
        );
        last
    }

    /// Upload `data` as `filename` through `POST /v1/uploads` and the URL it returns.
    fn upload(&self, key: Option<&str>, filename: &str, content_type: &str, data: &[u8]) -> String {
        let body = serde_json::json!({"filename": filename, "content_type": content_type, "bytes": data.len()});
        let (status, up) = self.call(key, "POST", "/v1/uploads", Some(&body.to_string()), &[]);
        assert_eq!(status, 201, "{up}");
        assert_eq!(up["method"], "PUT");
        assert_eq!(up["job"]["status"], "awaiting_upload");
        let file = self.file(&format!("up-{filename}"), data);
        let url = up["url"].as_str().expect("url");
        let ct = format!(
            "Content-Type: {}",
            up["headers"]["Content-Type"].as_str().expect("type")
        );
        let (status, out) = curl(&[
            "-X",
            "PUT",
            "-H",
            &ct,
            "--data-binary",
            &format!("@{}", file.display()),
            url,
        ]);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
        up["job_id"].as_str().expect("job id").to_string()
    }
}

/// Run curl; the HTTP status and the body.
fn curl(args: &[&str]) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let mut body = out.stdout;
    let split = body.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let status = String::from_utf8_lossy(&body[split..])
        .trim()
        .parse()
        .unwrap_or(0);
    body.truncate(split);
    (status, body)
}

fn png() -> Vec<u8> {
    encode(&photo_like(64, 48), image::ImageFormat::Png)
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn an_upload_through_the_returned_url_becomes_a_job_whose_outputs_download() {
    let s = Serve::start("", "");
    let id = s.upload(None, "my photo.png", "image/png", &png());
    let job = s.wait_status(None, &id, "succeeded", Duration::from_secs(60));
    assert_eq!(job["progress"]["percent"], 100.0);
    assert_eq!(job["profile"], "small");
    let outputs = job["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 1, "{job}");
    assert_eq!(
        (outputs[0]["width"].as_u64(), outputs[0]["format"].as_str()),
        (Some(48), Some("png"))
    );
    let (status, bytes) = curl(&[outputs[0]["url"].as_str().expect("url")]);
    assert_eq!(status, 200);
    assert!(
        bytes.starts_with(b"\x89PNG"),
        "the output URL serves the PNG"
    );
    assert_eq!(
        bytes.len() as u64,
        outputs[0]["bytes"].as_u64().expect("bytes")
    );
    let (status, manifest) = curl(&[job["manifest_url"].as_str().expect("manifest url")]);
    assert_eq!(status, 200);
    let manifest: Value = serde_json::from_slice(&manifest).expect("manifest JSON");
    // One access-log line per request, by route: never the path with its token.
    let logs = s.workers.logs();
    let served = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "request" && l["route"] == "/v1/jobs/{id}/signed/{token}/{*key}")
        .unwrap_or_else(|| panic!("an access-log line for the file download:\n{logs}"));
    assert_eq!(
        (served["method"].as_str(), served["status"].as_u64()),
        (Some("GET"), Some(200))
    );
    let url = outputs[0]["url"].as_str().expect("url");
    let token = url
        .split("/signed/")
        .nth(1)
        .and_then(|t| t.split('/').next())
        .expect("token");
    assert!(!logs.contains(token), "no token in the logs");
    // The event stream's URL carries a token for this job: a client with no headers follows it.
    let (status, events) = curl(&[job["events_url"].as_str().expect("events url")]);
    assert_eq!(status, 200);
    let events = String::from_utf8_lossy(&events);
    assert!(
        events.contains("event: status") && events.contains("\"succeeded\""),
        "{events}"
    );
    // The page: its HTML, script, style and the vendored hls.js, with a content security policy.
    let (status, html) = curl(&["-D", "-", &format!("{}/", s.base)]);
    let html = String::from_utf8_lossy(&html).to_lowercase();
    assert_eq!(status, 200);
    assert!(
        html.contains("content-security-policy: default-src 'self'"),
        "{html}"
    );
    assert!(html.contains("<script src=\"/page/app.js\""), "{html}");
    for (asset, starts) in [
        ("app.js", "// The mediaflow page"),
        ("app.css", "/* The mediaflow page"),
        ("hls.min.js", "!function"),
        ("hls.js-LICENSE", "Copyright"),
    ] {
        let (status, body) = curl(&[&format!("{}/page/{asset}", s.base)]);
        assert_eq!(status, 200, "{asset}");
        assert!(
            String::from_utf8_lossy(&body).starts_with(starts),
            "{asset}"
        );
    }
    assert_eq!(curl(&[&format!("{}/page/nothing.js", s.base)]).0, 404);
    assert_eq!(
        manifest["job_id"],
        id.as_str(),
        "the upload's job id is the manifest's"
    );

    // The list has it, newest first; a plain submit (no API) appears too.
    let plain = s.file("plain.png", &png());
    let out = s
        .workers
        .cmd(&["submit", &plain.display().to_string()])
        .output()
        .expect("submit");
    assert!(out.status.success());
    s.workers.wait_until(
        "the plain upload indexed as succeeded",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let (_, list) = s.call(None, "GET", "/v1/jobs?status=succeeded", None, &[]);
            list["jobs"].as_array().is_some_and(|j| j.len() == 2)
        },
    );
    let (_, page) = s.call(None, "GET", "/v1/jobs?limit=1", None, &[]);
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(1));
    assert!(
        page["jobs"][0]["sources"][0]
            .as_str()
            .is_some_and(|s| s.ends_with("plain.png")),
        "{page}"
    );
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let (_, rest) = s.call(
        None,
        "GET",
        &format!("/v1/jobs?limit=1&cursor={cursor}"),
        None,
        &[],
    );
    assert_eq!(rest["jobs"][0]["id"], id.as_str());
    assert!(rest["next_cursor"].is_null());

    let (status, again) = s.call(None, "GET", "/v1/jobs?status=nonsense", None, &[]);
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );

    // The index is rebuilt from the manifests.
    let mut s = s;
    let _ = s.child.kill();
    let _ = s.child.wait();
    for f in ["index.db", "index.db-wal", "index.db-shm"] {
        let _ = std::fs::remove_file(s.data().join(f));
    }
    let run = |args: &[&str]| {
        let out = s.workers.cmd(args).output().expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(run(&["index", "rebuild"]).contains("2 created"));
    let shown: Value = serde_json::from_str(&run(&["jobs", "show", &id])).expect("job JSON");
    assert_eq!(
        (
            shown["status"].as_str(),
            shown["outputs"].as_array().map(Vec::len)
        ),
        (Some("succeeded"), Some(1))
    );
    assert_eq!(
        run(&["jobs", "list", "--status", "succeeded"])
            .lines()
            .count(),
        2
    );
}

#[test]
fn hostile_requests_get_a_clear_4xx_and_nothing_is_written() {
    let s = Serve::start(
        "max_upload_bytes = 100000\nupload_idle_timeout_secs = 2",
        "[profiles.tiny]\nmax_upload_bytes = 1000\nupload_content_types = [\"image/png\"]\n",
    );
    let make = |body: &str| s.call(None, "POST", "/v1/uploads", Some(body), &[]);
    let long = "a".repeat(10_000);
    for (body, status, code) in [
        (
            r#"{"filename": "../x.png", "content_type": "image/png", "bytes": 10}"#.to_string(),
            422,
            "unprocessable",
        ),
        (
            r#"{"filename": "a\u0007b.png", "content_type": "image/png", "bytes": 10}"#.to_string(),
            422,
            "unprocessable",
        ),
        (
            format!(r#"{{"filename": "{long}", "content_type": "image/png", "bytes": 10}}"#),
            422,
            "unprocessable",
        ),
        (
            r#"{"filename": "x.html", "content_type": "text/html", "bytes": 10}"#.to_string(),
            415,
            "unsupported_media_type",
        ),
        (
            r#"{"filename": "x.png", "content_type": "image/png", "bytes": 100001}"#.to_string(),
            413,
            "too_large",
        ),
        (
            r#"{"filename": "x.png", "content_type": "image/png", "bytes": 10, "extra": 1}"#
                .to_string(),
            422,
            "unprocessable",
        ),
        (
            r#"{"filename": "x.png", "content_type": "image/png", "bytes": 10, "profile": "nope"}"#
                .to_string(),
            422,
            "unprocessable",
        ),
        (
            r#"{"filename": "x.png", "#.to_string(),
            400,
            "invalid_request",
        ),
    ] {
        let (got, answer) = make(&body);
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body:.80}: {answer}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let (got, answer) = s.call(
        None,
        "POST",
        "/v1/uploads",
        None,
        &["-H", "Content-Type: text/plain", "--data-binary", "{}"],
    );
    assert_eq!(
        (got, answer["error"]["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let (got, _) = s.call(
        None,
        "POST",
        "/v1/uploads",
        Some(&format!("{{\"x\": \"{}\"}}", "a".repeat(100_000))),
        &[],
    );
    assert_eq!(got, 413, "a JSON body over the limit");
    assert_eq!(s.call(None, "GET", "/v1/jobs/..%2Fetc", None, &[]).0, 404);
    assert_eq!(s.call(None, "DELETE", "/v1/jobs", None, &[]).0, 405);

    // The upload target: the size must be what was declared, the token right.
    let data = png();
    let body =
        serde_json::json!({"filename": "p.png", "content_type": "image/png", "bytes": data.len()});
    let (_, up) = make(&body.to_string());
    let url = up["url"].as_str().expect("url").to_string();
    let short = s.file("short.png", &data[..data.len() / 2]);
    let long = s.file("long.png", &[data.as_slice(), &[0u8; 64]].concat());
    let put = |file: &Path, url: &str, ct: &str, extra: &[&str]| {
        let mut args = vec!["-X", "PUT", "-H", ct, url];
        let at = format!("@{}", file.display());
        args.extend(["--data-binary", at.as_str()]);
        args.extend(extra);
        curl(&args).0
    };
    assert_eq!(
        put(&short, &url, "Content-Type: image/png", &[]),
        400,
        "shorter than declared"
    );
    assert_eq!(
        put(&long, &url, "Content-Type: image/png", &[]),
        400,
        "longer than declared (Content-Length)"
    );
    assert_eq!(
        put(
            &long,
            &url,
            "Content-Type: image/png",
            &["-H", "Transfer-Encoding: chunked"]
        ),
        413,
        "a chunked body running past the declared size"
    );
    assert_eq!(
        put(&short, &url, "Content-Type: image/jpeg", &[]),
        400,
        "another type than declared"
    );
    let forged = format!("{}x", url);
    let full = s.file("full.png", &data);
    assert_eq!(
        put(&full, &forged, "Content-Type: image/png", &[]),
        403,
        "a wrong token"
    );
    let sources = s.data().join("buckets/uploads");
    assert!(
        files_under(&sources).is_empty(),
        "nothing was stored: {:?}",
        files_under(&sources)
    );
    let id = up["job_id"].as_str().expect("id");
    assert_eq!(s.job(None, id)["status"], "awaiting_upload");

    // A slow client (half the body, then nothing) is cut off after
    // `api.upload_idle_timeout_secs` with 408: nothing stored, the upload still usable.
    let (status, waited) = stall(&url, &data);
    assert_eq!(status, 408, "a stalled body");
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
    assert!(files_under(&sources).is_empty());
    assert!(
        files_under(&s.data().join("uploads.tmp")).is_empty(),
        "no scratch file left behind"
    );
    assert_eq!(put(&full, &url, "Content-Type: image/png", &[]), 200);
    assert_eq!(
        put(&full, &url, "Content-Type: image/png", &[]),
        409,
        "an upload takes its bytes once"
    );
    assert_eq!(files_under(&sources).len(), 1);

    // A profile's own limits, named in the answer.
    for (body, status, setting) in [
        (
            r#"{"filename": "x.png", "content_type": "image/png", "bytes": 1001, "profile": "tiny"}"#,
            413,
            "profiles.tiny.max_upload_bytes",
        ),
        (
            r#"{"filename": "x.jpg", "content_type": "image/jpeg", "bytes": 10, "profile": "tiny"}"#,
            415,
            "profiles.tiny.upload_content_types",
        ),
    ] {
        let (got, answer) = make(body);
        assert_eq!(got, status, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(setting)),
            "{answer}"
        );
    }
    let (got, answer) = make(
        r#"{"filename": "x.png", "content_type": "image/png", "bytes": 1000, "profile": "tiny"}"#,
    );
    assert_eq!(got, 201, "within the profile's limits: {answer}");
}

/// PUT half of `data` to `url` with the whole length declared, then send nothing: the status
/// the server answers and how long it waited.
fn stall(url: &str, data: &[u8]) -> (u16, Duration) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').expect("path"));
    let mut tcp = std::net::TcpStream::connect(host).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\r\n",
        data.len()
    );
    tcp.write_all(head.as_bytes()).expect("head");
    tcp.write_all(&data[..data.len() / 2]).expect("half");
    let sent = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let status = String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, sent.elapsed())
}

#[test]
fn explicit_jobs_are_idempotent_by_key() {
    let s = Serve::start("", "");
    let src = s.data().join("buckets/uploads/in/a.png");
    std::fs::create_dir_all(src.parent().expect("dir")).expect("dir");
    std::fs::write(&src, png()).expect("source");
    let body = r#"{"sources": ["s3://uploads/in/a.png"], "profile": "small"}"#;
    let once = s.call(
        None,
        "POST",
        "/v1/jobs",
        Some(body),
        &["-H", "Idempotency-Key: order-17", "-D", "/dev/stderr"],
    );
    let twice = s.call(
        None,
        "POST",
        "/v1/jobs",
        Some(body),
        &["-H", "Idempotency-Key: order-17"],
    );
    assert_eq!((once.0, twice.0), (201, 201));
    assert_eq!(
        once.1["id"], twice.1["id"],
        "the same key gives the same job"
    );
    let other = s.call(
        None,
        "POST",
        "/v1/jobs",
        Some(r#"{"sources": ["s3://uploads/in/b.png"]}"#),
        &["-H", "Idempotency-Key: order-17"],
    );
    assert_eq!(
        (other.0, other.1["error"]["code"].as_str()),
        (422, Some("unprocessable"))
    );
    let id = once.1["id"].as_str().expect("id");
    let first = s.wait_status(None, id, "succeeded", Duration::from_secs(60));
    let manifests = crate::harness::manifests_under(&s.data().join("buckets/renditions"));
    assert_eq!(manifests.len(), 1, "one job ran, once");

    // A retry runs the finished job again under the same id, its outputs apart.
    let (status, retried) = s.call(None, "POST", &format!("/v1/jobs/{id}/retry"), None, &[]);
    assert_eq!(
        (status, retried["status"].as_str(), retried["run"].as_u64()),
        (202, Some("queued"), Some(2)),
        "{retried}"
    );
    assert_eq!(
        retried["manifest_url"], first["manifest_url"],
        "the first run's outputs stay until the second's"
    );
    let second = s.wait_status(None, id, "succeeded", Duration::from_secs(60));
    assert_eq!(second["runs"].as_array().map(Vec::len), Some(1), "{second}");
    assert_eq!(second["runs"][0]["status"], "succeeded");
    assert!(
        second["manifest_url"]
            .as_str()
            .is_some_and(|u| u.contains("/run-2/")),
        "{second}"
    );
    let manifests = crate::harness::manifests_under(&s.data().join("buckets/renditions"));
    assert_eq!(manifests.len(), 2, "both runs recorded");
    assert!(manifests.iter().all(|m| m["job_id"] == id));
    let bad = s.call(
        None,
        "POST",
        "/v1/jobs",
        Some(r#"{"sources": ["http://x/y"]}"#),
        &[],
    );
    assert_eq!(bad.0, 422);
    assert_eq!(
        s.call(None, "POST", &format!("/v1/jobs/{id}/cancel"), None, &[])
            .0,
        409,
        "a finished job cannot be canceled"
    );
}

#[test]
fn keys_scopes_revocation_and_tokens_bound_to_one_job() {
    let s = Serve::start("", "");
    // Open while no key exists.
    let first = s.upload(None, "a.png", "image/png", &png());
    s.wait_status(None, &first, "succeeded", Duration::from_secs(60));
    let key = |args: &[&str]| {
        let out = s.workers.cmd(args).output().expect("api-key");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let admin = key(&["api-key", "create", "--name", "admin"]);
    let reader = key(&["api-key", "create", "--name", "reader", "--scope", "read"]);
    assert!(admin.starts_with("mfk_") && reader.starts_with("mfk_"));
    let db = std::fs::read(s.data().join("index.db")).expect("index");
    assert!(
        !db.windows(admin.len()).any(|w| w == admin.as_bytes()),
        "only the hash is stored"
    );
    std::thread::sleep(Duration::from_secs(4)); // past the key cache
    let (status, e) = s.call(None, "GET", "/v1/jobs", None, &[]);
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(
        s.call(Some("mfk_wrong"), "GET", "/v1/jobs", None, &[]).0,
        401
    );
    assert_eq!(s.call(Some(&reader), "GET", "/v1/jobs", None, &[]).0, 200);
    let (status, e) = s.call(
        Some(&reader),
        "POST",
        "/v1/uploads",
        Some(r#"{"filename":"a.png","content_type":"image/png","bytes":1}"#),
        &[],
    );
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{e}"
    );
    let second = s.upload(Some(&admin), "b.png", "image/png", &png());
    let job2 = s.wait_status(Some(&admin), &second, "succeeded", Duration::from_secs(60));
    let job1 = s.job(Some(&admin), &first);
    // A file URL works with its own job's token only.
    let url2 = job2["outputs"][0]["url"].as_str().expect("url");
    assert_eq!(curl(&["-o", "/dev/null", url2]).0, 200);
    let token_of = |url: &str| {
        let after = url.split("/signed/").nth(1).expect("a signed file URL");
        after.split('/').next().expect("token").to_string()
    };
    let token2 = token_of(url2);
    let url1 = job1["outputs"][0]["url"].as_str().expect("url");
    let stolen = url1.replace(&token_of(url1), &token2);
    assert_ne!(stolen, url1);
    assert_eq!(
        curl(&["-o", "/dev/null", &stolen]).0,
        401,
        "a token for one job cannot read another"
    );
    let events = format!("{}/v1/jobs/{first}/events?token={token2}", s.base);
    assert_eq!(curl(&["-o", "/dev/null", &events]).0, 401);
    let out = s
        .workers
        .cmd(&["api-key", "revoke", "reader"])
        .output()
        .expect("revoke");
    assert!(out.status.success());
    std::thread::sleep(Duration::from_secs(4));
    let (status, e) = s.call(Some(&reader), "GET", "/v1/jobs", None, &[]);
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("revoked"))
    );
}

/// A 40 s 1080p H.264 clip at `path`: seconds of work, long enough to cancel while it runs.
fn long_clip(path: &Path) {
    crate::video::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1920x1080:rate=30:duration=40",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        path.to_str().expect("path"),
    ]);
}

#[test]
fn a_running_video_job_is_followed_over_events_and_cancelled() {
    let s = Serve::start(
        "multipart_threshold_bytes = 1073741824",
        "[profiles.clip]\nrenditions = []\n[profiles.clip.video]\nladder = [{ size = 1080, bitrate_kbps = 4000 }, { size = 720, bitrate_kbps = 2500 }]\n",
    );
    let clip = s.workers.dir.path().join("clip.mp4");
    long_clip(&clip);
    let data = std::fs::read(&clip).expect("clip");
    let body = serde_json::json!({"filename": "clip.mp4", "content_type": "video/mp4", "bytes": data.len(), "profile": "clip"});
    let (_, up) = s.call(None, "POST", "/v1/uploads", Some(&body.to_string()), &[]);
    let id = up["job_id"].as_str().expect("id").to_string();
    let events = std::process::Command::new("curl")
        .args([
            "-sS",
            "-N",
            "--max-time",
            "120",
            &format!("{}/v1/jobs/{id}/events", s.base),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl events");
    let (status, _) = curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: video/mp4",
        "--data-binary",
        &format!("@{}", clip.display()),
        up["url"].as_str().expect("url"),
    ]);
    assert_eq!(status, 200);
    let started = Instant::now();
    s.workers.wait_until(
        "the transcode under way",
        Duration::from_secs(120),
        Duration::from_millis(100),
        || {
            let j = s.job(None, &id);
            j["status"] == "running" && j["progress"]["percent"].as_f64().is_some_and(|p| p >= 15.0)
        },
    );
    let (status, asked) = s.call(None, "POST", &format!("/v1/jobs/{id}/cancel"), None, &[]);
    assert_eq!(
        (status, asked["cancel_requested"].as_bool()),
        (202, Some(true)),
        "{asked}"
    );
    let asked_at = Instant::now();
    let done = s.wait_status(None, &id, "canceled", Duration::from_secs(30));
    assert!(
        asked_at.elapsed() < Duration::from_secs(5),
        "canceled within a few seconds, took {:?}",
        asked_at.elapsed()
    );
    assert!(done["outputs"].as_array().is_some_and(Vec::is_empty));
    let out = events.wait_with_output().expect("events end with the job");
    let text = String::from_utf8_lossy(&out.stdout);
    let seen: Vec<(String, Value)> = text
        .split("\n\n")
        .filter_map(|block| {
            let kind = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((kind.to_string(), serde_json::from_str(data).ok()?))
        })
        .collect();
    let statuses: Vec<&str> = seen
        .iter()
        .filter(|(k, _)| k == "status")
        .filter_map(|(_, j)| j["status"].as_str())
        .collect();
    assert_eq!(statuses.first(), Some(&"awaiting_upload"), "{text}");
    assert!(
        statuses.contains(&"running") && statuses.last() == Some(&"canceled"),
        "{statuses:?}"
    );
    let percents: Vec<f64> = seen
        .iter()
        .filter(|(k, _)| k == "progress")
        .filter_map(|(_, j)| j["progress"]["percent"].as_f64())
        .collect();
    assert!(
        percents.len() >= 2 && percents.windows(2).all(|w| w[1] >= w[0]),
        "progress rises: {percents:?}"
    );
    let renditions = s.data().join("buckets/renditions");
    assert!(
        files_under(&renditions).is_empty(),
        "partial outputs removed: {:?}",
        files_under(&renditions)
    );
    assert!(started.elapsed() < Duration::from_secs(100));
}

#[test]
fn an_upload_that_never_arrives_expires_and_an_open_api_stays_on_loopback() {
    let s = Serve::start("upload_expiry_secs = 1", "");
    let body = r#"{"filename": "late.png", "content_type": "image/png", "bytes": 10}"#;
    let (_, up) = s.call(None, "POST", "/v1/uploads", Some(body), &[]);
    let id = up["job_id"].as_str().expect("id");
    s.wait_status(None, id, "expired", Duration::from_secs(10));
    let late = s.file("late.png", &[0u8; 10]);
    let (status, _) = curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: image/png",
        "--data-binary",
        &format!("@{}", late.display()),
        up["url"].as_str().expect("url"),
    ]);
    assert_eq!(status, 403, "the URL expired with the upload");

    let open = s
        .workers
        .cmd(&["serve", "--no-worker"])
        .env("MEDIAFLOW_API__LISTEN", "0.0.0.0:0")
        .output()
        .expect("serve");
    assert_eq!(open.status.code(), Some(2));
    let err = String::from_utf8_lossy(&open.stderr);
    assert!(
        err.contains("no API key exists") && err.contains("loopback"),
        "{err}"
    );
}

#[test]
fn kill_9_of_serve_mid_job_loses_nothing() {
    let mut s = Serve::start_with(
        "visibility_timeout_secs = 3\nmax_receive_count = 5",
        "",
        "[profiles.clip]\nrenditions = []\n[profiles.clip.video]\nladder = [{ size = 720, bitrate_kbps = 2500 }, { size = 360, bitrate_kbps = 800 }]\n",
    );
    let clip = s.workers.dir.path().join("clip.mp4");
    let clip_arg = clip.display().to_string();
    crate::video::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1280x720:rate=30:duration=12",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        &clip_arg,
    ]);
    let data = std::fs::read(&clip).expect("clip");
    let body = serde_json::json!({"filename": "clip.mp4", "content_type": "video/mp4", "bytes": data.len(), "profile": "clip"});
    let (_, up) = s.call(None, "POST", "/v1/uploads", Some(&body.to_string()), &[]);
    let id = up["job_id"].as_str().expect("id").to_string();
    let (status, _) = curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: video/mp4",
        "--data-binary",
        &format!("@{clip_arg}"),
        up["url"].as_str().expect("url"),
    ]);
    assert_eq!(status, 200);
    s.workers.wait_until(
        "the transcode under way",
        Duration::from_secs(120),
        Duration::from_millis(50),
        || {
            let j = s.job(None, &id);
            j["status"] == "running" && j["progress"]["percent"].as_f64().is_some_and(|p| p >= 10.0)
        },
    );
    crate::harness::signal(&s.child, libc::SIGKILL);
    let _ = s.child.wait();
    assert_eq!(
        s.job_offline(&id)["status"],
        "running",
        "the index still says running"
    );
    s.child = s.workers.spawn_args(&["serve"], &[]);
    s.wait_ready();
    let done = s.wait_status(None, &id, "succeeded", Duration::from_secs(180));
    assert!(
        done["attempt"].as_u64().is_some_and(|a| a >= 2),
        "run again after the kill: {done}"
    );
    assert_eq!(
        done["outputs"].as_array().map(|o| {
            o.iter()
                .filter(|o| {
                    o["format"] == "mp4" && o["name"].as_str().is_some_and(|n| !n.contains('/'))
                })
                .count()
        }),
        Some(2),
        "{done}"
    );
    let manifests = crate::harness::manifests_under(&s.data().join("buckets/renditions"));
    assert_eq!(manifests.len(), 1, "recorded once");
}

/// A > 20 MB video uploaded in parts as a browser would (each part PUT to its URL, one sent
/// again after a short attempt), completion refused while a part is missing, then accepted:
/// the stored object is the upload byte for byte, the job succeeds, the parts are gone.
#[test]
fn a_large_video_uploads_in_parts_and_becomes_a_job() {
    let s = Serve::start(
        "multipart_threshold_bytes = 8388608\nmultipart_part_bytes = 5242880",
        "[profiles.clip]\nrenditions = []\n[profiles.clip.video]\nladder = [{ size = 240, bitrate_kbps = 300 }]\nhls = false\n",
    );
    let data = crate::video::noisy_clip(&s.workers.dir.path().join("big.mp4"), 2.5);
    assert!(data.len() > 20_000_000, "{} bytes", data.len());
    let body = serde_json::json!({"filename": "big.mp4", "content_type": "video/mp4", "bytes": data.len(), "profile": "clip"});
    let (status, up) = s.call(None, "POST", "/v1/uploads", Some(&body.to_string()), &[]);
    assert_eq!(
        (status, up["method"].as_str()),
        (201, Some("multipart")),
        "{up}"
    );
    let parts = up["parts"].as_array().expect("parts").clone();
    assert_eq!(parts.len(), data.len().div_ceil(5 << 20));
    let id = up["job_id"].as_str().expect("id").to_string();
    let complete = up["complete_url"]
        .as_str()
        .expect("complete url")
        .to_string();
    let put = |n: usize, bytes: &[u8]| {
        let f = s.file(&format!("part-{n}"), bytes);
        curl(&[
            "-X",
            "PUT",
            "-H",
            "Content-Type:",
            "--data-binary",
            &format!("@{}", f.display()),
            parts[n]["url"].as_str().expect("part url"),
        ])
    };
    let mut offset = 0;
    let mut slices = Vec::new();
    for p in &parts {
        let len = p["bytes"].as_u64().expect("part bytes") as usize;
        slices.push(&data[offset..offset + len]);
        offset += len;
    }
    assert_eq!(offset, data.len(), "the parts cover the upload");
    let (status, short) = put(1, &slices[1][..1000]);
    assert_eq!(
        status,
        400,
        "a short part: {}",
        String::from_utf8_lossy(&short)
    );
    let mut sent = Vec::new();
    for (n, slice) in slices.iter().enumerate() {
        let (status, out) = put(n, slice);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
        let part: Value = serde_json::from_slice(&out).expect("part JSON");
        sent.push(serde_json::json!({"number": n + 1, "etag": part["etag"]}));
    }
    let finish = |parts: &[Value]| {
        let body = serde_json::json!({ "parts": parts }).to_string();
        let (status, out) = curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
            &complete,
        ]);
        (
            status,
            serde_json::from_slice::<Value>(&out).unwrap_or(Value::Null),
        )
    };
    let total = parts.len();
    let (status, early) = finish(&sent[..total - 1]);
    assert_eq!(status, 409, "{early}");
    assert!(
        early["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("part {total} of {total} is not listed"))),
        "{early}"
    );
    let mut wrong = sent.clone();
    wrong[2]["etag"] = Value::from("\"0123456789abcdef0123456789abcdef\"");
    let (status, answer) = finish(&wrong);
    assert_eq!(status, 409, "a part named with another ETag: {answer}");
    let beyond = parts[0]["url"]
        .as_str()
        .expect("url")
        .replace("/parts/1?", "/parts/99?");
    assert_eq!(curl(&["-X", "PUT", "--data-binary", "x", &beyond]).0, 404);
    let (status, done) = finish(&sent);
    assert_eq!(status, 200, "{done}");
    assert_eq!(finish(&sent).0, 409, "completing twice");
    let stored = files_under(&s.data())
        .into_iter()
        .find(|p| p.ends_with(format!("uploads/{id}/big.mp4")))
        .expect("the stored upload");
    assert!(
        std::fs::read(stored).expect("stored") == data,
        "the object is the upload, byte for byte"
    );
    let job = s.wait_status(None, &id, "succeeded", Duration::from_secs(180));
    assert!(
        job["outputs"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["format"] == "mp4")),
        "{job}"
    );
    assert!(
        !files_under(&s.data())
            .iter()
            .any(|p| p.to_string_lossy().contains(".parts")),
        "the parts are removed once joined"
    );
}

/// `GET /v1/openapi.json` is a valid OpenAPI document (read by openapi-spec-validator, not by
/// the crate that wrote it), names every route — each of which the server really routes — and
/// describes the job a client really gets.
#[test]
fn the_openapi_document_is_valid_and_matches_the_routes_and_a_real_job() {
    let s = Serve::start("", "");
    let (status, doc) = s.call(None, "GET", "/v1/openapi.json", None, &[]);
    assert_eq!(status, 200, "{doc}");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let file = s.file("openapi.json", doc.to_string().as_bytes());
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--subschema-errors", "all"])
        .arg(&file)
        .output()
        .expect("openapi-spec-validator (installed by .ci/setup)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let paths = doc["paths"].as_object().expect("paths");
    let names: Vec<&str> = paths.keys().map(String::as_str).collect();
    let mut want = vec![
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/cancel",
        "/v1/jobs/{id}/events",
        "/v1/jobs/{id}/files/{key}",
        "/v1/jobs/{id}/retry",
        "/v1/jobs/{id}/signed/{token}/{key}",
        "/v1/openapi.json",
        "/v1/uploads",
        "/v1/uploads/{id}",
        "/v1/uploads/{id}/complete",
        "/v1/uploads/{id}/parts/{n}",
    ];
    want.sort();
    let mut got = names.clone();
    got.sort();
    assert_eq!(got, want);
    for (path, ops) in paths {
        let concrete = path
            .replace("{id}", "nosuchjob")
            .replace("{n}", "1")
            .replace("{key}", "a.png");
        for method in ops.as_object().expect("operations").keys() {
            let (status, answer) = s.call(None, &method.to_uppercase(), &concrete, None, &[]);
            assert_ne!(status, 405, "{method} {path} is routed");
            assert!(
                !answer["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("such route")),
                "{method} {path} is routed: {answer}"
            );
            assert!(
                ops[method]["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path} documents its responses"
            );
        }
    }
    let id = s.upload(None, "p.png", "image/png", &png());
    let job = s.wait_status(None, &id, "succeeded", Duration::from_secs(60));
    let schema = &doc["components"]["schemas"]["JobView"];
    let props: Vec<&String> = schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .collect();
    for key in job.as_object().expect("job").keys() {
        assert!(props.contains(&key), "{key} is in the schema");
    }
    for required in schema["required"].as_array().expect("required") {
        assert!(
            job.get(required.as_str().expect("name")).is_some(),
            "{required} is in the job"
        );
    }
    assert_eq!(
        schema["properties"]["status"]["enum"],
        serde_json::json!([
            "awaiting_upload",
            "queued",
            "running",
            "succeeded",
            "failed",
            "canceled",
            "expired"
        ])
    );
}

/// The page in a real browser (Debian's Chromium driven by playwright-core, both installed by
/// `.ci/setup`): two images and a video uploaded through the file input, each upload bar at
/// 100 %, the jobs `succeeded`, the images decoded, the video playing from its HLS master with
/// its seek thumbnails; a corrupt file shows its error in plain words; a reload keeps the list.
/// Screenshots of each view are left under `target/browser-shots/` (artefacts, not committed).
#[test]
fn the_page_uploads_files_shows_their_progress_and_plays_the_video_in_a_real_browser() {
    // Videos get an AV1 rung beside the H.264 one.
    let s = Serve::start(
        "",
        concat!(
            "[profiles.small.video]\nladder = [\n",
            "    { size = 240, bitrate_kbps = 400 },\n",
            "    { size = 240, bitrate_kbps = 200, codec = \"av1\" },\n",
            "]\n",
        ),
    );
    let dir = s.workers.dir.path();
    let (photo, chart, clip, bad) = (
        dir.join("photo.jpg"),
        dir.join("chart.png"),
        dir.join("clip.mp4"),
        dir.join("broken.jpg"),
    );
    std::fs::write(
        &photo,
        encode(&photo_like(640, 480), image::ImageFormat::Jpeg),
    )
    .expect("photo");
    std::fs::write(&chart, png()).expect("chart");
    crate::video::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25:duration=4",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        clip.to_str().expect("path"),
    ]);
    let mut junk = b"\xff\xd8\xff\xe0".to_vec();
    junk.extend((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(&bad, junk).expect("broken");
    // Long enough to be running when the page cancels it.
    let long = dir.join("long.mp4");
    long_clip(&long);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shots = root.join("target/browser-shots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let browse = |args: &[&std::ffi::OsStr]| -> Value {
        let out = Command::new("node")
            .current_dir(root.join("tests/browser"))
            .arg("page.mjs")
            .args(args)
            .output()
            .expect("node runs (installed by .ci/setup)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "the browser run failed:\n{stdout}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            s.workers.logs()
        );
        serde_json::from_str(stdout.trim()).expect("one JSON line")
    };
    let seen = browse(&[
        "flow".as_ref(),
        s.base.as_ref(),
        shots.as_os_str(),
        long.as_os_str(),
        photo.as_os_str(),
        chart.as_os_str(),
        clip.as_os_str(),
        bad.as_os_str(),
    ]);

    for name in ["photo.jpg", "chart.png", "clip.mp4", "broken.jpg"] {
        let u = &seen["uploads"][name];
        assert_eq!(u["uploaded"], "100", "{name}: {u}");
        assert_eq!(u["bar"], u["max"], "{name}'s bar is full: {u}");
    }
    for name in ["photo.jpg", "chart.png", "clip.mp4"] {
        assert_eq!(seen["uploads"][name]["status"], "succeeded", "{seen}");
        assert_eq!(seen["jobs"][name]["status"], "succeeded", "{seen}");
    }
    for name in ["photo.jpg", "chart.png"] {
        let widths = seen["jobs"][name]["images"].as_array().expect("images");
        assert!(
            !widths.is_empty() && widths.iter().all(|w| w.as_u64() > Some(0)),
            "{name}'s renditions decode in the browser: {seen}"
        );
    }
    let video = &seen["jobs"]["clip.mp4"];
    assert!(
        video["played"].as_f64() > Some(0.5),
        "the video plays: {video}"
    );
    assert!(
        video["player"]
            .as_str()
            .is_some_and(|p| p.starts_with("HLS")),
        "{video}"
    );
    // The master lists both codecs to the player; Chromium decodes AV1 (dav1d), so hls.js
    // plays the AV1 variant.
    let codecs: Vec<&str> = video["codecs"].as_str().unwrap_or("").split(' ').collect();
    assert!(
        codecs.contains(&"AV1") && codecs.contains(&"H.264"),
        "{video}"
    );
    assert_eq!(video["canPlayAv1"], true, "{video}");
    assert_eq!(video["codec"], "AV1", "{video}");
    assert!(
        video["scenes"].as_u64() > Some(0) && video["poster"] == true,
        "seek thumbnails and a poster: {video}"
    );
    assert!(
        video["downloads"].as_u64() > Some(0),
        "download links: {video}"
    );
    let broken = &seen["jobs"]["broken.jpg"];
    assert_eq!(broken["status"], "failed", "{seen}");
    assert!(
        broken["error"]
            .as_str()
            .is_some_and(|e| e.contains("This job failed") && e.len() > 30),
        "the error in plain words: {broken}"
    );
    let listed = seen["listed"].as_array().expect("list after reload");
    assert_eq!(listed.len(), 4, "a reload keeps the list: {seen}");
    assert_eq!(
        seen["failedOnly"],
        serde_json::json!(["failed"]),
        "the status filter: {seen}"
    );
    let cancel = &seen["cancel"];
    assert_eq!(
        (&cancel["before"], &cancel["after"]),
        (&Value::from("running"), &Value::from("canceled")),
        "a running job cancelled from the page: {cancel}"
    );
    let job = s.job(None, cancel["job"].as_str().expect("id"));
    assert_eq!(job["status"], "canceled", "{job}");

    // Keys now required: the page asks for one, refuses a wrong one, keeps the right one.
    let out = s
        .workers
        .cmd(&["api-key", "create", "--name", "browser"])
        .output()
        .expect("api-key");
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(key.starts_with("mfk_"), "{out:?}");
    std::thread::sleep(Duration::from_secs(4)); // past the key cache
    let seen = browse(&[
        "key".as_ref(),
        s.base.as_ref(),
        shots.as_os_str(),
        key.as_ref(),
    ]);
    assert_eq!(
        seen["focused"], "key-input",
        "the prompt takes the focus: {seen}"
    );
    assert!(
        seen["listMessage"]
            .as_str()
            .is_some_and(|m| m.contains("API key")),
        "{seen}"
    );
    assert!(
        seen["wrongKeyReason"]
            .as_str()
            .is_some_and(|m| !m.is_empty() && !m.contains("mfk_not_a_key")),
        "a wrong key is refused with a reason: {seen}"
    );
    assert_eq!(seen["promptHidden"], true, "{seen}");
    assert_eq!(seen["listedAfterReload"], 5, "the key is kept: {seen}");
    assert_eq!(seen["promptHiddenAfterReload"], true, "{seen}");
    assert_eq!(
        seen["keyInUrl"], false,
        "the key never goes in a URL: {seen}"
    );
    for view in [
        "uploads",
        "list",
        "job-clip.mp4",
        "job-photo.jpg",
        "job-broken.jpg",
        "job-running",
        "job-canceled",
        "key-prompt",
        "phone-list",
    ] {
        assert!(
            shots.join(format!("{view}.png")).exists(),
            "{view} screenshot"
        );
    }
}
