//! Notifications against real endpoints: webhooks to an HTTP server in the test (signatures
//! checked with Python's own `hmac`, retries on 503 and dropped connections, a refusal, a
//! full queue and a bounded shutdown flush), SNS topics with subscribed SQS queues and a
//! filter policy, and the SQS sink on moto; then through real worker processes: the bundled
//! `notify-rules` routing by status and duration, a trapping rule that is fail-open, a dead
//! webhook that does not hold up the job's acknowledgement, a fail-closed rule that turns a
//! job into `retrying` then `dead-lettered`, poison messages dead-lettered at the queue's
//! last receive (on SQS: the RedrivePolicy's, not the config's), and `mediaflow process`
//! sending each file's event to the default sink.

use crate::harness::{Workers, config_text, signal};
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use mediaflow::config::Config;
use mediaflow::error::JobError;
use mediaflow::notify::{Event, EventStatus, Notifier};
use mediaflow::plugin::catalog::Catalog;
use mediaflow_tests::{Moto, encode, photo_like};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "t0p-s3cret";

/// What a webhook endpoint does with one request.
#[derive(Clone, Copy, Debug)]
enum Reply {
    /// Answer with this status.
    Status(u16),
    /// Answer with this status after a pause.
    Slow(u16, Duration),
    /// Close the connection without answering.
    Drop,
    /// Never answer (hold the connection until the client goes).
    Hang,
}

/// A request the endpoint received.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// An HTTP/1.1 endpoint on 127.0.0.1:0; `reply(path, n)` decides the answer to the n-th
/// (0-based) request to `path`.
struct Hook {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Hook {
    fn start(reply: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let reply = Arc::new(reply);
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let (log, reply) = (log.clone(), reply.clone());
                std::thread::spawn(move || serve(stream, &log, &*reply));
            }
        });
        Hook { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn to(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}

fn serve(stream: TcpStream, log: &Mutex<Vec<Seen>>, reply: &dyn Fn(&str, usize) -> Reply) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let n = {
        let mut log = log.lock().expect("lock");
        let n = log.iter().filter(|s| s.path == path).count();
        log.push(Seen {
            path: path.clone(),
            headers,
            body,
        });
        n
    };
    let mut stream = stream;
    let status = match reply(&path, n) {
        Reply::Status(s) => s,
        Reply::Slow(s, d) => {
            std::thread::sleep(d);
            s
        }
        Reply::Drop => return,
        Reply::Hang => {
            // Until the client gives up and closes.
            let _ = reader.read(&mut [0u8; 1]);
            return;
        }
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} Whatever\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno"
    );
}

/// `X-Mediaflow-Signature` as Python's standard library computes it: an independent HMAC.
fn python_signature(secret: &str, body: &[u8]) -> String {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import hashlib, hmac, sys; print('sha256=' + hmac.new(sys.argv[1].encode(), sys.stdin.buffer.read(), hashlib.sha256).hexdigest())",
            secret,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body)
        .expect("write body");
    let out = child.wait_with_output().expect("python3 output");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn assert_signed(s: &Seen) {
    assert_eq!(
        s.header("x-mediaflow-signature"),
        python_signature(SECRET, &s.body),
        "signature of {}",
        String::from_utf8_lossy(&s.body)
    );
}

fn wait(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(
            t.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The `[notify]` section of `toml`, validated as the engine validates it.
fn notify_config(toml: &str) -> mediaflow::config::NotifyConfig {
    Config::from_sources(Some(("test.toml", toml)), &[])
        .unwrap_or_else(|e| panic!("{e}\n{toml}"))
        .notify
}

fn webhook_sink(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[notify.sinks.{name}]\ntype = \"webhook\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\nbackoff_base_ms = 20\nbackoff_max_ms = 200\n{extra}\n"
    )
}

fn succeeded(source: &str) -> Event {
    Event::new(EventStatus::Succeeded, "job-1", source, "default")
}

#[test]
fn webhooks_are_signed_and_retried_on_503_and_dropped_connections_but_not_on_refusals() {
    let hook = Hook::start(|path, n| match (path, n) {
        ("/flaky", 0 | 1) => Reply::Status(503),
        ("/dropping", 0) => Reply::Drop,
        ("/refusing", _) => Reply::Status(400),
        _ => Reply::Status(204),
    });
    let rt = runtime();
    let mut events = Vec::new();
    for (path, max_attempts) in [("/flaky", 5), ("/dropping", 3), ("/refusing", 5)] {
        let config = notify_config(&format!(
            "[notify]\ndefault_sink = \"hook\"\n{}",
            webhook_sink(
                "hook",
                &hook.url(path),
                &format!("max_attempts = {max_attempts}")
            )
        ));
        let notifier = rt
            .block_on(Notifier::start(&config, &Catalog::default()))
            .expect("notifier");
        let event = succeeded(&format!("s3://uploads{path}.jpg"));
        notifier.emit(&event);
        rt.block_on(notifier.shutdown());
        events.push((path, event, notifier.counters().snapshot()));
    }

    // 503, 503, then 204: three attempts of the same signed event, one accepted.
    let (_, event, counts) = &events[0];
    let flaky = hook.to("/flaky");
    assert_eq!(flaky.len(), 3, "{flaky:?}");
    for (i, s) in flaky.iter().enumerate() {
        assert_eq!(s.header("x-mediaflow-event-id"), event.id);
        assert_eq!(
            s.header("x-mediaflow-delivery-attempt"),
            (i + 1).to_string()
        );
        assert_eq!(s.header("content-type"), "application/json");
        assert_eq!(s.header("x-mediaflow-attr-status"), "succeeded");
        assert_eq!(s.header("x-mediaflow-attr-profile"), "default");
        assert_eq!(
            s.header("x-mediaflow-subject"),
            "[mediaflow] succeeded: s3://uploads/flaky.jpg"
        );
        assert_eq!(s.body, flaky[0].body, "every attempt sends the same body");
        assert_signed(s);
    }
    let body = flaky[2].json();
    assert_eq!(body["id"], event.id.as_str());
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["source"]["uri"], "s3://uploads/flaky.jpg");
    let hook_counts = counts.sink("hook").expect("hook counts");
    assert_eq!(
        (
            hook_counts.delivered,
            hook_counts.failed,
            hook_counts.dropped
        ),
        (1, 0, 0)
    );

    // A connection closed without an answer is retried too.
    assert_eq!(hook.to("/dropping").len(), 2);
    assert_eq!(events[1].2.sink("hook").map(|c| c.delivered), Some(1));

    // 400 is a refusal: one attempt, given up, counted as failed.
    assert_eq!(hook.to("/refusing").len(), 1);
    let c = events[2].2.sink("hook").expect("hook counts");
    assert_eq!((c.delivered, c.failed), (0, 1));
}

#[test]
fn a_full_queue_drops_without_waiting_and_shutdown_abandons_the_rest_within_its_window() {
    let hook = Hook::start(|_, _| Reply::Hang);
    let rt = runtime();
    let config = notify_config(&format!(
        "[notify]\ndefault_sink = \"hook\"\nqueue_capacity = 4\n{}",
        webhook_sink("hook", &hook.url("/hang"), "timeout_ms = 60000")
    ));
    let notifier = rt
        .block_on(Notifier::start(&config, &Catalog::default()))
        .expect("notifier");
    let t = Instant::now();
    for i in 0..200 {
        notifier.emit(&succeeded(&format!("s3://uploads/{i}.jpg")));
    }
    let emitting = t.elapsed();
    assert!(
        emitting < Duration::from_millis(1_500),
        "emitting never waits for the sink: {emitting:?}"
    );
    let before = notifier.counters().snapshot();
    let dropped_at_once = before.sink("hook").map(|c| c.dropped).unwrap_or(0);
    assert!(
        dropped_at_once >= 200 - 4 - 2 * mediaflow::notify::notifier::MAX_IN_FLIGHT as u64,
        "a full queue drops: {before:?}"
    );
    wait("deliveries in flight", Duration::from_secs(10), || {
        !hook.seen().is_empty()
    });
    let t = Instant::now();
    rt.block_on(notifier.shutdown_within(Duration::from_millis(300)));
    let flushing = t.elapsed();
    assert!(
        flushing < Duration::from_secs(3),
        "the flush window bounds shutdown: {flushing:?}"
    );
    let after = notifier.counters().snapshot();
    let c = after.sink("hook").expect("hook counts");
    assert_eq!(
        (c.delivered, c.failed, c.dropped),
        (0, 0, 200),
        "every notification is accounted for"
    );
    // Shut down: a late event is dropped and counted, not lost silently.
    notifier.emit(&succeeded("s3://uploads/late.jpg"));
    assert_eq!(
        notifier
            .counters()
            .snapshot()
            .sink("hook")
            .map(|c| c.dropped),
        Some(201)
    );
}

#[test]
fn rules_that_cannot_be_used_stop_start_up_naming_the_rule() {
    let (host, _dir) = mediaflow_tests::host();
    let catalog = Catalog::bundled(&host).expect("bundled plugins");
    let rt = runtime();
    for (plugin, expected) in [
        ("notify-rules@^2", "is not available"),
        ("exif@^1", "not a notification-rule"),
    ] {
        let config = notify_config(&format!(
            "[[notify.rules]]\nplugin = \"notify-rules@^1\"\n[[notify.rules]]\nplugin = \"{plugin}\"\n"
        ));
        let e = rt
            .block_on(Notifier::start(&config, &catalog))
            .expect_err(plugin)
            .to_string();
        assert!(
            e.contains("notify.rules[1].plugin") && e.contains(expected),
            "{plugin}: {e}"
        );
    }
}

/// moto clients.
struct Aws {
    rt: tokio::runtime::Runtime,
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
}

impl Aws {
    fn new(moto: &Moto) -> Aws {
        let rt = runtime();
        let shared = rt.block_on(moto.sdk_config());
        Aws {
            sns: aws_sdk_sns::Client::new(&shared),
            sqs: aws_sdk_sqs::Client::new(&shared),
            rt,
        }
    }

    /// Create a queue; (url, arn).
    fn queue(&self, name: &str, attributes: &[(QueueAttributeName, String)]) -> (String, String) {
        self.rt.block_on(async {
            let mut req = self.sqs.create_queue().queue_name(name);
            for (k, v) in attributes {
                req = req.attributes(k.clone(), v);
            }
            let url = req
                .send()
                .await
                .expect("create queue")
                .queue_url()
                .expect("url")
                .to_string();
            let a = self
                .sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .expect("attributes");
            let arn = a
                .attributes()
                .and_then(|m| m.get(&QueueAttributeName::QueueArn))
                .expect("arn")
                .clone();
            (url, arn)
        })
    }

    /// Every message that arrives on `url` until `n` have, within `timeout`.
    fn drain(&self, url: &str, n: usize, timeout: Duration) -> Vec<aws_sdk_sqs::types::Message> {
        let t = Instant::now();
        let mut out = Vec::new();
        while out.len() < n && t.elapsed() < timeout {
            let got = self
                .rt
                .block_on(
                    self.sqs
                        .receive_message()
                        .queue_url(url)
                        .max_number_of_messages(10)
                        .wait_time_seconds(1)
                        .message_attribute_names("All")
                        .send(),
                )
                .expect("receive");
            out.extend(got.messages().iter().cloned());
        }
        out
    }
}

fn attribute(m: &aws_sdk_sqs::types::Message, name: &str) -> String {
    m.message_attributes()
        .and_then(|a| a.get(name))
        .and_then(MessageAttributeValue::string_value)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn sns_topics_with_subscribed_queues_and_the_sqs_sink_receive_events_with_attributes() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let (all_url, all_arn) = aws.queue("all-events", &[]);
    let (failed_url, failed_arn) = aws.queue("failed-events", &[]);
    let (direct_url, _) = aws.queue("direct", &[]);
    let topic = aws.rt.block_on(async {
        let topic = aws
            .sns
            .create_topic()
            .name("job-events")
            .send()
            .await
            .expect("topic")
            .topic_arn()
            .expect("arn")
            .to_string();
        aws.sns
            .subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(&all_arn)
            .send()
            .await
            .expect("subscribe");
        // What the message attributes are for: a subscription that takes failures only.
        aws.sns
            .subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(&failed_arn)
            .attributes("FilterPolicy", r#"{"status": ["failed"]}"#)
            .send()
            .await
            .expect("subscribe with a filter policy");
        topic
    });
    // Two rules: the bundled notify-rules twice, one routing to SNS, one to SQS.
    let (host, _dir) = mediaflow_tests::host();
    let catalog = Catalog::bundled(&host).expect("bundled plugins");
    let config = notify_config(&format!(
        r#"
[[notify.rules]]
plugin = "notify-rules@^1"
config = {{ on_succeeded = "events", on_failed = "events" }}
[[notify.rules]]
plugin = "notify-rules@^1"
config = {{ on_succeeded = "direct", on_failed = "", subject_prefix = "[direct]" }}
[notify.sinks.events]
type = "sns"
topic_arn = "{topic}"
[notify.sinks.direct]
type = "sqs"
queue_url = "{direct_url}"
"#
    ));
    let shared = aws.rt.block_on(moto.sdk_config());
    let notifier = aws
        .rt
        .block_on(Notifier::start_with(&config, &catalog, Some(&shared)))
        .expect("notifier");
    let ok = succeeded("s3://uploads/cat.jpg");
    let failed = Event::new(
        EventStatus::Failed,
        "job-2",
        "s3://uploads/broken.png",
        "thumbs",
    )
    .with_error(&JobError::CorruptInput("truncated IDAT".into()));
    notifier.emit(&ok);
    notifier.emit(&failed);
    aws.rt.block_on(notifier.shutdown());
    let counts = notifier.counters().snapshot();
    assert_eq!(
        counts.sink("events").map(|c| c.delivered),
        Some(2),
        "{counts:?}"
    );
    assert_eq!(
        counts.sink("direct").map(|c| c.delivered),
        Some(1),
        "{counts:?}"
    );

    // The SNS envelope, as a subscribed queue receives it.
    let all = aws.drain(&all_url, 2, Duration::from_secs(15));
    assert_eq!(all.len(), 2, "{all:?}");
    let envelopes: Vec<serde_json::Value> = all
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap_or_default()).expect("SNS envelope"))
        .collect();
    let envelope = |id: &str| {
        envelopes
            .iter()
            .find(|e| {
                serde_json::from_str::<serde_json::Value>(e["Message"].as_str().unwrap_or(""))
                    .is_ok_and(|m| m["event_id"] == id)
            })
            .unwrap_or_else(|| panic!("event {id} in {envelopes:?}"))
    };
    let e = envelope(&ok.id);
    assert_eq!(e["Type"], "Notification");
    assert_eq!(e["TopicArn"], topic.as_str());
    assert_eq!(
        e["Subject"],
        "[mediaflow] job succeeded: s3://uploads/cat.jpg"
    );
    assert_eq!(e["MessageAttributes"]["status"]["Value"], "succeeded");
    assert_eq!(e["MessageAttributes"]["profile"]["Value"], "default");
    assert_eq!(e["MessageAttributes"]["event_id"]["Value"], ok.id.as_str());
    let message: serde_json::Value =
        serde_json::from_str(e["Message"].as_str().expect("Message")).expect("body JSON");
    assert_eq!(message["status"], "succeeded");
    assert_eq!(message["job_id"], "job-1");
    let e = envelope(&failed.id);
    assert_eq!(e["MessageAttributes"]["status"]["Value"], "failed");
    assert_eq!(
        e["MessageAttributes"]["error_code"]["Value"],
        "corrupt_input"
    );

    // The filter policy let only the failure through. (moto delivers SNS → SQS within the
    // Publish call, so by now everything has arrived: a short wait shows nothing more comes.)
    let only_failed = aws.drain(&failed_url, 2, Duration::from_secs(1));
    assert_eq!(only_failed.len(), 1, "{only_failed:?}");
    let e: serde_json::Value =
        serde_json::from_str(only_failed[0].body().unwrap_or_default()).expect("envelope");
    assert_eq!(e["MessageAttributes"]["status"]["Value"], "failed");

    // The SQS sink: the body as the rule made it, attributes as message attributes.
    let direct = aws.drain(&direct_url, 2, Duration::from_secs(1));
    assert_eq!(direct.len(), 1, "{direct:?}");
    let body: serde_json::Value =
        serde_json::from_str(direct[0].body().unwrap_or_default()).expect("body JSON");
    assert_eq!(body["event_id"], ok.id.as_str());
    assert_eq!(attribute(&direct[0], "status"), "succeeded");
    assert_eq!(attribute(&direct[0], "event_id"), ok.id);
}

// --- Through real worker processes -------------------------------------------------------

/// Workers in local mode (embedded queue, filesystem buckets under `dir/data`).
fn local_workers(worker_extra: &str, extra: &str) -> Workers {
    let worker_extra = format!("visibility_timeout_secs = 4\n{worker_extra}");
    Workers::new(
        |dir| config_text(&dir.join("data"), &worker_extra, extra),
        Vec::new(),
    )
}

fn local_queue(w: &Workers, max_receive: u32) -> mediaflow::queue::local::LocalQueue {
    mediaflow::queue::local::LocalQueue::open(&w.dir.path().join("data/queue.db"), max_receive)
        .expect("queue")
}

fn write_png(w: &Workers, name: &str) -> PathBuf {
    let p = w.dir.path().join(name);
    std::fs::write(&p, encode(&photo_like(64, 48), image::ImageFormat::Png)).expect("write");
    p
}

fn write_broken(w: &Workers, name: &str) -> PathBuf {
    let p = w.dir.path().join(name);
    std::fs::write(&p, b"\x89PNG\r\n\x1a\nthis is not really a png").expect("write");
    p
}

fn submit(w: &Workers, files: &[PathBuf]) {
    let mut args = vec!["submit".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = w.cmd(&argv).output().expect("submit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every manifest under `root`.
fn manifests(root: &Path) -> Vec<serde_json::Value> {
    crate::harness::manifests_under(root)
}

/// `tests/programs/guest-rule-panic` as a local plugin directory (`rule-panic` 0.1.0).
fn panic_rule(w: &Workers) -> PathBuf {
    let dir = w.dir.path().join("rule-panic");
    std::fs::create_dir_all(&dir).expect("plugin dir");
    std::fs::copy(
        mediaflow_tests::programs::RULE_PANIC,
        dir.join("plugin.wasm"),
    )
    .expect("copy wasm");
    std::fs::write(
        dir.join("plugin.toml"),
        "name = \"rule-panic\"\nversion = \"0.1.0\"\nworld = \"notification-rule\"\n",
    )
    .expect("plugin.toml");
    dir
}

/// Config text that adds the panicking rule's directory to the catalog.
fn with_panic_rule(extra: &str) -> impl FnOnce(&Path) -> String {
    let extra = extra.to_string();
    move |dir: &Path| {
        format!(
            "[plugins]\nlocal = [\"{}\"]\n{extra}",
            dir.join("rule-panic").display()
        )
    }
}

/// Local-mode workers whose config (after `[worker]`) is `extra(dir)`, with the panicking rule
/// plugin in place.
fn local_workers_with_rule(worker_extra: &str, extra: impl FnOnce(&Path) -> String) -> Workers {
    let worker_extra = format!("visibility_timeout_secs = 4\n{worker_extra}");
    let w = Workers::new(
        |dir| config_text(&dir.join("data"), &worker_extra, &extra(dir)),
        Vec::new(),
    );
    panic_rule(&w);
    w
}

/// The one log line (JSON) with all of `needles`.
fn log_line(w: &Workers, needles: &[&str]) -> Option<String> {
    w.logs()
        .lines()
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
}

#[test]
fn notify_rules_in_a_worker_route_succeeded_failed_and_slow_jobs_to_their_sinks() {
    let hook = Hook::start(|_, _| Reply::Status(200));
    let extra = format!(
        r#"
[[notify.rules]]
plugin = "notify-rules@^1"
config = {{ on_succeeded = "events", on_failed = "alerts", slow_ms = 0.001, on_slow = "slow" }}
{}{}{}"#,
        webhook_sink("events", &hook.url("/events"), ""),
        webhook_sink("alerts", &hook.url("/alerts"), ""),
        webhook_sink("slow", &hook.url("/slow"), ""),
    );
    let w = local_workers("", &extra);
    submit(
        &w,
        &[write_png(&w, "good.png"), write_broken(&w, "broken.png")],
    );
    let mut worker = w.spawn();
    w.wait_until(
        "four notifications",
        Duration::from_secs(60),
        Duration::from_millis(25),
        || hook.seen().len() >= 4,
    );
    signal(&worker, libc::SIGTERM);
    assert_eq!(w.wait_exit(&mut worker, Duration::from_secs(20)), 0);
    assert_eq!(hook.seen().len(), 4, "{:?}", hook.seen());
    for s in hook.seen() {
        assert_signed(&s);
    }
    let manifests = manifests(&w.dir.path().join("data/buckets/renditions"));
    let good = manifests
        .iter()
        .find(|m| m["status"] == "succeeded")
        .expect("a succeeded manifest");

    let events = hook.to("/events");
    assert_eq!(events.len(), 1, "a succeeded job → events");
    let e = events[0].json();
    assert_eq!(e["status"], "succeeded");
    assert_eq!(e["source"], "s3://uploads/good.png");
    assert_eq!(e["job_id"], good["job_id"]);
    assert_eq!(e["outputs"], 1);
    assert_eq!(e["attempt"], 1);
    assert_eq!(e["event_id"], events[0].header("x-mediaflow-event-id"));

    let alerts = hook.to("/alerts");
    assert_eq!(alerts.len(), 1, "a corrupt input → failed → alerts");
    let a = alerts[0].json();
    assert_eq!(a["status"], "failed");
    assert_eq!(a["source"], "s3://uploads/broken.png");
    assert_eq!(a["error"]["code"], "corrupt_input");
    assert_eq!(
        alerts[0].header("x-mediaflow-attr-error_code"),
        "corrupt_input"
    );

    let slow = hook.to("/slow");
    assert_eq!(slow.len(), 2, "slow_ms tiny: both jobs are slow too");
    let mut statuses: Vec<String> = slow
        .iter()
        .map(|s| {
            assert_eq!(s.header("x-mediaflow-attr-slow"), "true");
            s.json()["status"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["failed", "succeeded"]);
}

#[test]
fn a_trapping_rule_is_fail_open_and_a_dead_webhook_does_not_hold_up_the_job() {
    // Every answer is a 500, and slow: three attempts take over two seconds.
    let hook = Hook::start(|_, _| Reply::Slow(500, Duration::from_millis(700)));
    let sink = webhook_sink("hook", &hook.url("/dead"), "max_attempts = 3");
    let w = local_workers_with_rule(
        "",
        with_panic_rule(&format!(
            r#"
[[notify.rules]]
plugin = "rule-panic@^0.1"
[[notify.rules]]
plugin = "notify-rules@^1"
config = {{ on_succeeded = "hook" }}
{sink}"#
        )),
    );
    submit(&w, &[write_png(&w, "photo.png")]);
    let mut worker = w.spawn();
    let outputs = w.dir.path().join("data/buckets/renditions");
    w.wait_until(
        "the job recorded and its message deleted",
        Duration::from_secs(60),
        Duration::from_millis(25),
        || manifests(&outputs).len() == 1 && local_queue(&w, 5).depth().expect("depth") == (0, 0),
    );
    assert!(
        hook.seen().len() < 3,
        "the message was acknowledged while the webhook was still being retried"
    );
    assert_eq!(manifests(&outputs)[0]["status"], "succeeded", "fail-open");
    w.wait_until(
        "the give-up",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || log_line(&w, &["notification not delivered: given up"]).is_some(),
    );
    let attempts = hook.to("/dead");
    assert_eq!(attempts.len(), 3, "max_attempts");
    let event_id = attempts[0].header("x-mediaflow-event-id");
    assert!(
        attempts
            .iter()
            .all(|a| a.header("x-mediaflow-event-id") == event_id)
    );
    let gave_up = log_line(&w, &["notification not delivered: given up"]).expect("give-up");
    assert!(
        gave_up.contains(event_id)
            && gave_up.contains("\"sink\":\"hook\"")
            && gave_up.contains("500"),
        "{gave_up}"
    );
    let trapped = log_line(
        &w,
        &["notification rule failed", "\"plugin\":\"rule-panic\""],
    )
    .expect("the trap is logged");
    assert!(
        trapped.contains("\"version\":\"0.1.0\"")
            && trapped.contains("\"error_code\":\"trap\"")
            && trapped.contains("deliberate panic"),
        "{trapped}"
    );
    signal(&worker, libc::SIGTERM);
    assert_eq!(w.wait_exit(&mut worker, Duration::from_secs(20)), 0);
}

#[test]
fn a_fail_closed_rule_retries_the_job_then_dead_letters_it_and_so_are_poison_messages() {
    let hook = Hook::start(|_, _| Reply::Status(200));
    let sink = webhook_sink("hook", &hook.url("/ops"), "");
    let w = local_workers_with_rule(
        "max_receive_count = 2",
        with_panic_rule(&format!(
            r#"
[[notify.rules]]
plugin = "rule-panic@^0.1"
fail_closed = true
[[notify.rules]]
plugin = "notify-rules@^1"
config = {{ on_succeeded = "hook", on_failed = "hook", on_retrying = "hook", on_dead_lettered = "hook" }}
{sink}"#
        )),
    );
    submit(&w, &[write_png(&w, "held.png")]);
    local_queue(&w, 2)
        .send("this is not a job")
        .expect("poison");
    let mut worker = w.spawn();
    w.wait_until(
        "both messages dead-lettered",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || local_queue(&w, 2).depth().expect("depth") == (0, 2) && hook.seen().len() >= 3,
    );
    signal(&worker, libc::SIGTERM);
    assert_eq!(w.wait_exit(&mut worker, Duration::from_secs(20)), 0);
    assert!(
        manifests(&w.dir.path().join("data/buckets/renditions")).is_empty(),
        "a fail-closed rule that cannot decide leaves the job unrecorded"
    );
    let seen: Vec<serde_json::Value> = hook.seen().iter().map(Seen::json).collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let find = |status: &str, source: &str| {
        seen.iter()
            .find(|e| e["status"] == status && e["source"] == source)
            .unwrap_or_else(|| panic!("a {status} event for {source:?} in {seen:?}"))
    };
    let retrying = find("retrying", "s3://uploads/held.png");
    assert_eq!(retrying["attempt"], 1);
    assert_eq!(retrying["error"]["code"], "notify_rule_failed");
    assert_eq!(retrying["error"]["class"], "transient");
    let dead = find("dead-lettered", "s3://uploads/held.png");
    assert_eq!(dead["attempt"], 2);
    assert_eq!(dead["job_id"], retrying["job_id"]);
    let poison = find("dead-lettered", "");
    assert_eq!(poison["attempt"], 2);
    assert_eq!(poison["error"]["code"], "bad_message");
    assert!(
        w.logs().contains("\"fail_closed\":true"),
        "the rule's failure is logged as fail-closed"
    );
}

#[test]
fn on_sqs_the_last_receive_is_the_redrive_policys_and_the_sqs_sink_gets_the_dead_letter() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    // The worker's output bucket: its default plugin registry (`plugins/` there) is listed at
    // start-up, and a bucket that does not exist stops the worker (exit 2).
    let (s3, _) = aws.rt.block_on(moto.clients());
    aws.rt
        .block_on(s3.create_bucket().bucket("renditions").send())
        .expect("output bucket");
    let (_, dlq_arn) = aws.queue("jobs-dlq", &[]);
    let (jobs_url, _) = aws.queue(
        "jobs",
        &[
            (
                QueueAttributeName::RedrivePolicy,
                format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"2"}}"#),
            ),
            (QueueAttributeName::VisibilityTimeout, "5".into()),
        ],
    );
    let (alerts_url, _) = aws.queue("alerts", &[]);
    // worker.max_receive_count stays at its default (5): the queue's redrive says 2.
    let worker_extra = format!(
        "queue_url = \"{jobs_url}\"\ns3_path_style = true\nreceive_wait_secs = 1\nvisibility_timeout_secs = 5\n"
    );
    let extra = format!(
        r#"
[[notify.rules]]
plugin = "notify-rules@^1"
config = {{ on_succeeded = "", on_failed = "", on_dead_lettered = "alerts" }}
[notify.sinks.alerts]
type = "sqs"
queue_url = "{alerts_url}"
"#
    );
    let env = moto
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let w = Workers::new(
        |dir| config_text(&dir.join("data"), &worker_extra, &extra),
        env,
    );
    aws.rt
        .block_on(
            aws.sqs
                .send_message()
                .queue_url(&jobs_url)
                .message_body("{\"not\": \"a job\"}")
                .send(),
        )
        .expect("send poison");
    let mut worker = w.spawn();
    let got = aws.drain(&alerts_url, 1, Duration::from_secs(30));
    signal(&worker, libc::SIGTERM);
    assert_eq!(w.wait_exit(&mut worker, Duration::from_secs(20)), 0);
    assert_eq!(got.len(), 1, "a dead-lettered event; logs:\n{}", w.logs());
    let body: serde_json::Value =
        serde_json::from_str(got[0].body().unwrap_or_default()).expect("body JSON");
    assert_eq!(body["status"], "dead-lettered");
    assert_eq!(body["attempt"], 2);
    assert_eq!(body["error"]["code"], "bad_message");
    assert_eq!(attribute(&got[0], "status"), "dead-lettered");
    assert_eq!(
        attribute(&got[0], "event_id"),
        body["event_id"].as_str().unwrap_or("-")
    );
}

#[test]
fn mediaflow_process_sends_each_files_event_to_the_default_sink() {
    let hook = Hook::start(|_, _| Reply::Status(202));
    let sink = webhook_sink("hook", &hook.url("/process"), "");
    let w = Workers::new(
        |dir| {
            format!(
                "default_profile = \"small\"\n[profiles.small]\nrenditions = [{{ name = \"s\", width = 48, format = \"png\" }}]\n[plugins]\ncache_dir = \"{}\"\n[notify]\ndefault_sink = \"hook\"\n{sink}",
                dir.join("cache").display()
            )
        },
        Vec::new(),
    );
    let good = write_png(&w, "good.png");
    let broken = write_broken(&w, "broken.png");
    let out_dir = w.dir.path().join("out");
    let out = w
        .cmd(&[
            "process",
            &good.display().to_string(),
            &broken.display().to_string(),
            "--out",
            &out_dir.display().to_string(),
        ])
        .output()
        .expect("process");
    assert_eq!(
        out.status.code(),
        Some(1),
        "one file failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Delivered before the command returned (the flush window at exit).
    let seen = hook.to("/process");
    assert_eq!(seen.len(), 2, "{seen:?}");
    for s in &seen {
        assert_signed(s);
    }
    let events: Vec<serde_json::Value> = seen.iter().map(Seen::json).collect();
    let ok = events
        .iter()
        .find(|e| e["status"] == "succeeded")
        .expect("succeeded event");
    assert!(
        ok["source"]["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("file://") && u.ends_with("good.png")),
        "{ok}"
    );
    assert_eq!(ok["outputs"][0]["width"], 48);
    assert!(
        ok["outputs"][0]["uri"]
            .as_str()
            .is_some_and(|u| u.ends_with("good/s.png")),
        "{ok}"
    );
    let failed = events
        .iter()
        .find(|e| e["status"] == "failed")
        .expect("failed event");
    assert_eq!(failed["error"]["code"], "corrupt_input");
    assert_eq!(failed["error"]["class"], "permanent");
}

/// The outbox: `kill -9` after a job is recorded while its webhook is still being delivered
/// (the endpoint hangs); the restarted worker delivers the event again from the manifest, with
/// the same event id, confirms it in the job index, and sends it no third time.
#[test]
fn kill_9_between_a_jobs_completion_and_its_webhook_delivers_it_after_restart_with_the_same_id() {
    let hook = Hook::start(|_, n| {
        if n == 0 {
            Reply::Hang
        } else {
            Reply::Status(200)
        }
    });
    let extra = format!(
        "[notify]\ndefault_sink = \"hook\"\noutbox_redeliver_secs = 1\n{}",
        webhook_sink("hook", &hook.url("/events"), "timeout_ms = 60000")
    );
    let w = local_workers("", &extra);
    submit(&w, &[write_png(&w, "a.png")]);
    let mut worker = w.spawn();
    w.wait_until(
        "the webhook under way",
        Duration::from_secs(60),
        Duration::from_millis(25),
        || hook.seen().len() == 1,
    );
    let recorded = manifests(&w.dir.path().join("data/buckets/renditions"));
    assert_eq!(recorded.len(), 1, "the job is recorded");
    signal(&worker, libc::SIGKILL);
    let _ = worker.wait();
    let first = hook.seen()[0].json();
    let job_id = recorded[0]["job_id"].as_str().expect("job id").to_string();
    let pending = || {
        let out = w
            .cmd(&["jobs", "show", &job_id])
            .output()
            .expect("jobs show");
        let job: serde_json::Value = serde_json::from_slice(&out.stdout).expect("job JSON");
        job["notify_pending"].as_bool().expect("notify_pending")
    };
    assert!(pending(), "the index keeps the undelivered notification");
    let mut again = w.spawn();
    w.wait_until(
        "the event delivered again",
        Duration::from_secs(60),
        Duration::from_millis(25),
        || hook.seen().len() >= 2,
    );
    let second = hook.seen()[1].json();
    assert_eq!(second["id"], first["id"], "the same event id");
    assert_eq!(
        (second["job_id"].as_str(), second["status"].as_str()),
        (Some(job_id.as_str()), Some("succeeded"))
    );
    w.wait_until(
        "confirmed in the index",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || !pending(),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        hook.seen().len(),
        2,
        "delivered once more, not again and again"
    );
    signal(&again, libc::SIGTERM);
    assert_eq!(w.wait_exit(&mut again, Duration::from_secs(20)), 0);
}
