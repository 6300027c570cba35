//! The worker against a real S3/SQS endpoint (moto on 127.0.0.1, one server per test), with
//! real worker processes: every message form of DESIGN §2 arriving the way AWS delivers it
//! (S3 → SQS, S3 → SNS → SQS, S3 → EventBridge → SQS, `s3:TestEvent`, an explicit job);
//! duplicate delivery; corrupt media; a poison message redriven to the DLQ; a job longer than
//! 3× the visibility timeout; SIGTERM draining and releasing; `kill -9` and 200 jobs over two
//! workers. The output bucket is versioned, so "one manifest per job" is checked on S3's own
//! record of every write. Below the worker: multipart uploads (read back byte-identical; a
//! failure aborts the upload), what moto does with `If-None-Match: *`, and batch deletes with
//! a failed entry.

use crate::harness::{Workers, config_text, signal};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, Event, EventBridgeConfiguration, NotificationConfiguration,
    QueueConfiguration, TopicConfiguration, VersioningConfiguration,
};
use aws_sdk_sqs::types::QueueAttributeName;
use mediaflow::queue::sqs::SqsQueue;
use mediaflow::queue::{Queue, QueueError};
use mediaflow::storage::s3::{MIN_PART_BYTES, Multipart};
use mediaflow::storage::{S3Storage, Storage};
use mediaflow_tests::{Moto, encode, photo_like};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

fn runtime() -> tokio::runtime::Runtime {
    // Multi-threaded: the engine's S3/SQS types block on a handle to it from this thread.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A tiny PNG, different per `seed`.
fn png(seed: u32) -> Vec<u8> {
    encode(&photo_like(64 + seed % 13, 40), image::ImageFormat::Png)
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Moto with the buckets, queues and notifications of a deployment, and workers configured
/// to use them.
struct Stack {
    moto: Moto,
    rt: tokio::runtime::Runtime,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    jobs_url: String,
    jobs_arn: String,
    dlq_url: String,
    workers: Workers,
}

/// Sources uploaded here reach the queue by the bucket's S3 → SQS notification.
const UPLOADS: &str = "uploads";
/// No notification: for explicit jobs.
const DIRECT: &str = "direct";
/// Outputs and manifests (versioned).
const OUT: &str = "renditions";

impl Stack {
    /// The queue's (and the worker's) visibility timeout, the redrive's maxReceiveCount, and
    /// extra worker config (`[worker]` lines, then more tables).
    fn start(visibility_secs: u64, max_receive: u32, worker_extra: &str, extra: &str) -> Stack {
        let moto = Moto::start();
        let rt = runtime();
        let (s3, sqs) = rt.block_on(moto.clients());
        let (jobs_url, jobs_arn, dlq_url) = rt.block_on(async {
            for b in [UPLOADS, DIRECT, OUT] {
                s3.create_bucket().bucket(b).send().await.expect("bucket");
            }
            s3.put_bucket_versioning()
                .bucket(OUT)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .expect("versioning");
            let dlq_url = create_queue(&sqs, "jobs-dlq", &[]).await;
            let dlq_arn = queue_arn(&sqs, &dlq_url).await;
            let redrive = format!(
                r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receive}"}}"#
            );
            let jobs_url = create_queue(
                &sqs,
                "jobs",
                &[
                    (QueueAttributeName::RedrivePolicy, redrive),
                    (
                        QueueAttributeName::VisibilityTimeout,
                        visibility_secs.to_string(),
                    ),
                ],
            )
            .await;
            let jobs_arn = queue_arn(&sqs, &jobs_url).await;
            (jobs_url, jobs_arn, dlq_url)
        });
        let stack_env: Vec<(String, String)> = moto
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let worker_extra = format!(
            "queue_url = \"{jobs_url}\"\ns3_path_style = true\nreceive_wait_secs = 1\nvisibility_timeout_secs = {visibility_secs}\n{worker_extra}"
        );
        let workers = Workers::new(
            |dir| config_text(&dir.join("data"), &worker_extra, extra),
            stack_env,
        );
        let stack = Stack {
            moto,
            rt,
            s3,
            sqs,
            jobs_url,
            jobs_arn,
            dlq_url,
            workers,
        };
        stack.notify(
            UPLOADS,
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(&stack.jobs_arn)
                        .events(Event::S3ObjectCreated)
                        .build()
                        .expect("queue configuration"),
                )
                .build(),
        );
        stack
    }

    fn block<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn notify(&self, bucket: &str, config: NotificationConfiguration) {
        self.block(
            self.s3
                .put_bucket_notification_configuration()
                .bucket(bucket)
                .notification_configuration(config)
                .send(),
        )
        .expect("notification configuration");
    }

    /// Upload; returns the ETag (unquoted).
    fn upload(&self, bucket: &str, key: &str, data: Vec<u8>) -> String {
        let out = self
            .block(
                self.s3
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(ByteStream::from(data))
                    .send(),
            )
            .expect("upload");
        out.e_tag()
            .unwrap_or_default()
            .trim_matches('"')
            .to_string()
    }

    fn send(&self, body: &str) {
        self.block(
            self.sqs
                .send_message()
                .queue_url(&self.jobs_url)
                .message_body(body)
                .send(),
        )
        .expect("send");
    }

    /// (visible, in flight) messages of the jobs queue, and the DLQ's visible messages.
    fn depths(&self) -> (u32, u32, u32) {
        let count = |url: &str, name: QueueAttributeName| {
            let a = self
                .block(
                    self.sqs
                        .get_queue_attributes()
                        .queue_url(url)
                        .attribute_names(name.clone())
                        .send(),
                )
                .expect("queue attributes");
            a.attributes()
                .and_then(|m| m.get(&name))
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        };
        (
            count(
                &self.jobs_url,
                QueueAttributeName::ApproximateNumberOfMessages,
            ),
            count(
                &self.jobs_url,
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            ),
            count(
                &self.dlq_url,
                QueueAttributeName::ApproximateNumberOfMessages,
            ),
        )
    }

    /// Every object version in the output bucket: key → version ids.
    fn versions(&self) -> BTreeMap<String, Vec<String>> {
        self.block(async {
            let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let (mut key_marker, mut version_marker) = (None, None);
            loop {
                let page = self
                    .s3
                    .list_object_versions()
                    .bucket(OUT)
                    .set_key_marker(key_marker.take())
                    .set_version_id_marker(version_marker.take())
                    .send()
                    .await
                    .expect("list versions");
                for v in page.versions() {
                    out.entry(v.key().unwrap_or_default().to_string())
                        .or_default()
                        .push(v.version_id().unwrap_or_default().to_string());
                }
                if !page.is_truncated().unwrap_or(false) {
                    break out;
                }
                key_marker = page.next_key_marker().map(str::to_string);
                version_marker = page.next_version_id_marker().map(str::to_string);
            }
        })
    }

    /// Manifest keys in the output bucket.
    fn manifest_keys(&self) -> Vec<String> {
        self.versions()
            .into_keys()
            .filter(|k| k.ends_with("/manifest.json"))
            .collect()
    }

    /// An object's bytes (a given version, or the latest).
    fn get(&self, bucket: &str, key: &str, version: Option<&str>) -> Vec<u8> {
        self.block(async {
            self.s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .set_version_id(version.map(str::to_string))
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {bucket}/{key}: {e:?}"))
                .body
                .collect()
                .await
                .expect("body")
                .into_bytes()
                .to_vec()
        })
    }

    /// Every manifest, by source URI (panics if a source has two).
    fn manifests(&self) -> BTreeMap<String, serde_json::Value> {
        let mut out = BTreeMap::new();
        for key in self.manifest_keys() {
            let m: serde_json::Value =
                serde_json::from_slice(&self.get(OUT, &key, None)).expect("manifest JSON");
            let source = m["source"]["uri"].as_str().unwrap_or_default().to_string();
            assert!(
                out.insert(source.clone(), m).is_none(),
                "two manifests for {source}"
            );
        }
        out
    }

    fn wait_until(&self, what: &str, timeout: Duration, ok: impl FnMut() -> bool) {
        self.workers
            .wait_until(what, timeout, Duration::from_millis(250), ok);
    }

    /// Every manifest key in the output bucket has exactly one version: no job was recorded
    /// twice. Returns the number of manifests.
    fn assert_one_version_per_manifest(&self) -> usize {
        let versions = self.versions();
        let manifests: Vec<_> = versions
            .iter()
            .filter(|(k, _)| k.ends_with("/manifest.json"))
            .collect();
        for (key, v) in &manifests {
            assert_eq!(v.len(), 1, "{key} was written {} times", v.len());
        }
        manifests.len()
    }
}

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: &[(QueueAttributeName, String)],
) -> String {
    let mut req = sqs.create_queue().queue_name(name);
    for (k, v) in attributes {
        req = req.attributes(k.clone(), v);
    }
    req.send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("url")
        .to_string()
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    let a = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attrs");
    a.attributes()
        .and_then(|m| m.get(&QueueAttributeName::QueueArn))
        .expect("arn")
        .clone()
}

/// An explicit job (DESIGN §2 form 5).
fn explicit_job(source: &str, profile: &str, output: &str) -> String {
    serde_json::json!({"version": 1, "sources": [source], "profile": profile, "output": output})
        .to_string()
}

#[test]
fn every_message_form_flows_through_sqs_duplicates_corrupt_media_and_poison_are_handled() {
    let stack = Stack::start(10, 2, "", "");
    let shared = stack.block(stack.moto.sdk_config());
    // S3 → SNS → SQS: the queue gets the S3 event inside an SNS envelope.
    let sns = aws_sdk_sns::Client::new(&shared);
    let topic_arn = stack.block(async {
        let topic = sns
            .create_topic()
            .name("uploads-topic")
            .send()
            .await
            .expect("topic");
        let topic_arn = topic.topic_arn().expect("topic arn").to_string();
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(&stack.jobs_arn)
            .send()
            .await
            .expect("subscribe");
        stack
            .s3
            .create_bucket()
            .bucket("via-sns")
            .send()
            .await
            .expect("bucket");
        topic_arn
    });
    stack.notify(
        "via-sns",
        NotificationConfiguration::builder()
            .topic_configurations(
                TopicConfiguration::builder()
                    .topic_arn(topic_arn)
                    .events(Event::S3ObjectCreated)
                    .build()
                    .expect("topic configuration"),
            )
            .build(),
    );
    // S3 → EventBridge → SQS: an "Object Created" event matched by a rule targeting the queue.
    let events = aws_sdk_eventbridge::Client::new(&shared);
    stack.block(async {
        stack.s3.create_bucket().bucket("via-eb").send().await.expect("bucket");
        events
            .put_rule()
            .name("s3-created")
            .event_pattern(
                r#"{"source":["aws.s3"],"detail-type":["Object Created"],"detail":{"bucket":{"name":["via-eb"]}}}"#,
            )
            .send()
            .await
            .expect("rule");
        events
            .put_targets()
            .rule("s3-created")
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("jobs")
                    .arn(&stack.jobs_arn)
                    .build()
                    .expect("target"),
            )
            .send()
            .await
            .expect("targets");
    });
    stack.notify(
        "via-eb",
        NotificationConfiguration::builder()
            .event_bridge_configuration(EventBridgeConfiguration::builder().build())
            .build(),
    );

    // One source per form; keys with spaces and '+' check that each form is decoded once.
    stack.upload(UPLOADS, "photos/My Photo.png", png(1));
    stack.upload("via-sns", "sns/a+b c.png", png(2));
    stack.upload("via-eb", "eb/x y.png", png(3));
    stack.upload(DIRECT, "job.png", png(4));
    stack.send(&explicit_job(
        "s3://direct/job.png",
        "small",
        "s3://renditions/explicit/",
    ));
    // Corrupt media: a failure manifest, not a retry loop.
    stack.upload(
        UPLOADS,
        "broken.png",
        b"\x89PNG\r\n\x1a\nnot really a png".to_vec(),
    );
    // Poison: redriven to the DLQ after maxReceiveCount = 2.
    stack.send("this is not a job");
    // Duplicate delivery, twice at once (2 jobs in flight: likely processed concurrently).
    stack.upload(DIRECT, "dup.png", png(5));
    let dup = explicit_job("s3://direct/dup.png", "small", "s3://renditions/");
    stack.send(&dup);
    stack.send(&dup);

    let t = Instant::now();
    let mut worker = stack.workers.spawn();
    stack.wait_until(
        "6 manifests and a dead letter",
        Duration::from_secs(90),
        || stack.manifest_keys().len() == 6 && stack.depths().2 == 1,
    );
    let first_round = t.elapsed();
    // The same job once more, after it was recorded: acknowledged without work.
    stack.send(&dup);
    stack.wait_until("the queue to drain", Duration::from_secs(30), || {
        let (visible, in_flight, _) = stack.depths();
        visible + in_flight == 0
    });
    let t = Instant::now();
    signal(&worker, libc::SIGTERM);
    assert_eq!(
        stack
            .workers
            .wait_exit(&mut worker, Duration::from_secs(10)),
        0
    );
    let stop = t.elapsed();
    eprintln!("message forms: first round {first_round:?}, SIGTERM → exit {stop:?}");
    assert!(
        stop < Duration::from_secs(3),
        "an idle worker stops at once: {stop:?}"
    );

    let manifests = stack.manifests();
    let logs = stack.workers.logs();
    let sources: Vec<&str> = manifests.keys().map(String::as_str).collect();
    assert_eq!(
        sources,
        [
            "s3://direct/dup.png",
            "s3://direct/job.png",
            "s3://uploads/broken.png",
            "s3://uploads/photos/My Photo.png",
            "s3://via-eb/eb/x y.png",
            "s3://via-sns/sns/a+b c.png",
        ],
        "{logs}"
    );
    for (source, m) in &manifests {
        if source.ends_with("broken.png") {
            assert_eq!(m["status"], "failed", "{m}");
            assert_eq!(m["error"]["code"], "corrupt_input", "{m}");
            continue;
        }
        assert_eq!(m["status"], "succeeded", "{m}");
        let uri = m["outputs"][0]["uri"].as_str().expect("output uri");
        let key = uri
            .strip_prefix("s3://renditions/")
            .expect("in the output bucket");
        let bytes = stack.get(OUT, key, None);
        assert_eq!(sha256_hex(&bytes), m["outputs"][0]["sha256"], "{uri}");
        assert_eq!(
            image::load_from_memory(&bytes).expect("decodes").width(),
            48
        );
    }
    assert!(
        manifests["s3://direct/job.png"]["outputs"][0]["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("s3://renditions/explicit/small/job.png/")),
        "the explicit job's output prefix is used"
    );
    // Corrupt media fails on its first attempt, never retried.
    assert_eq!(
        logs.lines()
            .filter(|l| l.contains("job failed") && l.contains("broken.png"))
            .count(),
        1,
        "{logs}"
    );
    // s3:TestEvent: sent by moto when the SQS notification was set, and through SNS.
    assert!(
        logs.matches("s3:TestEvent").count() >= 2,
        "both test events acknowledged:\n{logs}"
    );
    assert!(logs.contains("left for the dead-letter queue"), "{logs}");
    let dead = stack.block(stack.sqs.receive_message().queue_url(&stack.dlq_url).send());
    let dead = dead.expect("receive from the DLQ");
    assert_eq!(dead.messages()[0].body(), Some("this is not a job"));
    // Duplicates: one manifest version; every version of every output byte-identical.
    assert_eq!(stack.assert_one_version_per_manifest(), 6);
    let dup_manifest = &manifests["s3://direct/dup.png"];
    let versions = stack.versions();
    for output in dup_manifest["outputs"].as_array().expect("outputs") {
        let key = output["uri"]
            .as_str()
            .and_then(|u| u.strip_prefix("s3://renditions/"))
            .expect("key");
        for v in &versions[key] {
            assert_eq!(
                sha256_hex(&stack.get(OUT, key, Some(v))),
                output["sha256"],
                "every write of {key} has the same bytes"
            );
        }
    }
    assert!(
        logs.contains("already processed"),
        "the third delivery was acknowledged without work:\n{logs}"
    );
}

/// Profiles using the `guest-slow` plugin: `slowN` takes N seconds.
fn slow_profiles(workers: &Workers, seconds: &[u64]) {
    let plugin = workers.slow_plugin(1000);
    workers.edit_config(|mut c| {
        c += &format!("[plugins]\nlocal = [\"{}\"]\n", plugin.display());
        for s in seconds {
            c += &format!(
                "[profiles.slow{s}]\nrenditions = [{{ name = \"s\", width = 48, format = \"png\" }}]\nmetadata = [{{ plugin = \"slow@0.1\", config = {{ millis = {} }} }}]\n",
                s * 1000
            );
        }
        c
    });
}

#[test]
fn heartbeat_keeps_a_long_job_with_one_worker_and_sigterm_drains_then_releases() {
    // Visibility 3 s; a 10 s job; two workers. Only the heartbeat (every 1 s) keeps the
    // message from the second worker.
    let stack = Stack::start(3, 5, "", "");
    slow_profiles(&stack.workers, &[3, 10, 60]);
    stack.upload(DIRECT, "long.png", png(1));
    stack.send(&explicit_job(
        "s3://direct/long.png",
        "slow10",
        "s3://renditions/",
    ));
    let t = Instant::now();
    let mut a = stack.workers.spawn();
    let mut b = stack.workers.spawn();
    stack.wait_until("the long job", Duration::from_secs(60), || {
        !stack.manifest_keys().is_empty()
    });
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(10),
        "the job was long: {took:?}"
    );
    // Stopping drains anything either worker still runs, so a second (wrong) run would show.
    stack
        .workers
        .stop_all(&mut [&mut a, &mut b], Duration::from_secs(30));
    let logs = stack.workers.logs();
    let manifests = stack.manifests();
    assert_eq!(manifests.len(), 1);
    let m = &manifests["s3://direct/long.png"];
    assert_eq!(m["status"], "succeeded", "{m}");
    assert_eq!(m["metadata"]["slow"]["slept_ms"], 10_000);
    assert_eq!(logs.matches("job recorded").count(), 1, "one run:\n{logs}");
    assert!(
        !logs.contains("already processed") && !logs.contains("another worker recorded"),
        "never redelivered:\n{logs}"
    );
    assert!(!logs.contains("heartbeat failed"), "{logs}");
    assert_eq!(stack.depths(), (0, 0, 0));

    // SIGTERM with two jobs in flight: the 3 s one finishes within the 6 s drain deadline; the
    // 60 s one is released (visibility 0) for another worker at once, not after its 30 s
    // visibility timeout.
    stack.upload(DIRECT, "quick.png", png(2));
    stack.upload(DIRECT, "endless.png", png(3));
    stack.send(&explicit_job(
        "s3://direct/quick.png",
        "slow3",
        "s3://renditions/",
    ));
    stack.send(&explicit_job(
        "s3://direct/endless.png",
        "slow60",
        "s3://renditions/",
    ));
    let mut c = stack.workers.spawn_with(&[
        ("MEDIAFLOW_WORKER__DRAIN_TIMEOUT_SECS", "6"),
        ("MEDIAFLOW_WORKER__VISIBILITY_TIMEOUT_SECS", "30"),
    ]);
    stack.wait_until("both jobs in flight", Duration::from_secs(30), || {
        stack.depths() == (0, 2, 0)
    });
    assert_eq!(
        stack.manifest_keys().len(),
        1,
        "the quick job is still running"
    );
    let t = Instant::now();
    signal(&c, libc::SIGTERM);
    let code = stack.workers.wait_exit(&mut c, Duration::from_secs(20));
    assert_eq!(code, 0, "{}", stack.workers.logs());
    let drained = t.elapsed();
    eprintln!("long job {took:?}; SIGTERM with jobs in flight → exit after {drained:?}");
    assert!(
        drained >= Duration::from_secs(5) && drained < Duration::from_secs(10),
        "waited for the drain deadline, not for the 60 s job: {drained:?}"
    );
    let manifests = stack.manifests();
    assert_eq!(manifests["s3://direct/quick.png"]["status"], "succeeded");
    assert!(!manifests.contains_key("s3://direct/endless.png"));
    let logs = stack.workers.logs();
    assert!(logs.contains("released for another worker"), "{logs}");
    let again = stack
        .block(
            stack
                .sqs
                .receive_message()
                .queue_url(&stack.jobs_url)
                .wait_time_seconds(1)
                .send(),
        )
        .expect("receive");
    assert!(
        again.messages()[0]
            .body()
            .is_some_and(|b| b.contains("endless.png")),
        "released: visible again at once"
    );
    assert_eq!(stack.assert_one_version_per_manifest(), 2);
}

#[test]
fn kill_9_loses_nothing_and_two_workers_share_200_jobs_without_duplicate_manifests() {
    let stack = Stack::start(3, 5, "", "");
    let t = Instant::now();
    stack.block(async {
        let mut uploads = tokio::task::JoinSet::new();
        for i in 0..200u32 {
            let s3 = stack.s3.clone();
            uploads.spawn(async move {
                s3.put_object()
                    .bucket(UPLOADS)
                    .key(format!("batch/j{i:03}.png"))
                    .body(ByteStream::from(png(i)))
                    .send()
                    .await
                    .map(|_| ())
            });
            if uploads.len() >= 16 {
                uploads
                    .join_next()
                    .await
                    .expect("task")
                    .expect("join")
                    .expect("upload");
            }
        }
        while let Some(r) = uploads.join_next().await {
            r.expect("join").expect("upload");
        }
    });
    let uploaded = t.elapsed();
    // A worker killed mid-run: its in-flight messages reappear after the visibility timeout.
    let t = Instant::now();
    let mut first = stack.workers.spawn();
    stack.wait_until("some progress", Duration::from_secs(60), || {
        stack.manifest_keys().len() >= 10
    });
    signal(&first, libc::SIGKILL);
    let _ = stack.workers.wait_exit(&mut first, Duration::from_secs(10));
    let in_flight = stack.depths().1;
    assert!(in_flight >= 1, "jobs were in flight when the worker died");
    let mut a = stack.workers.spawn();
    let mut b = stack.workers.spawn();
    stack.wait_until("200 manifests", Duration::from_secs(180), || {
        stack.manifest_keys().len() >= 200
    });
    stack.wait_until("the queue to drain", Duration::from_secs(30), || {
        stack.depths() == (0, 0, 0)
    });
    let processed = t.elapsed();
    stack
        .workers
        .stop_all(&mut [&mut a, &mut b], Duration::from_secs(20));
    assert_eq!(stack.assert_one_version_per_manifest(), 200);
    let manifests = stack.manifests();
    assert_eq!(manifests.len(), 200, "every job exactly once");
    assert!(manifests.values().all(|m| m["status"] == "succeeded"));
    let logs = stack.workers.logs();
    eprintln!(
        "200 jobs: uploaded in {uploaded:?}, processed (kill -9, then 2 workers) in {processed:?}; {in_flight} in flight at the kill; {} 'job recorded', {} acknowledged by manifest",
        logs.matches("job recorded").count(),
        logs.matches("already processed").count()
    );
}

/// Fails every `UploadPart` request for one part number before it is sent, as a network
/// failure would.
#[derive(Debug)]
struct FailPart(u32);

impl aws_sdk_s3::config::Intercept for FailPart {
    fn name(&self) -> &'static str {
        "FailPart"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_s3::config::RuntimeComponents,
        _: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let uri = context.request().uri();
        if uri.contains("uploadId=") && uri.contains(&format!("partNumber={}", self.0)) {
            return Err(format!("injected failure sending part {}", self.0).into());
        }
        Ok(())
    }
}

#[test]
fn s3_multipart_uploads_read_back_identical_failures_abort_and_if_none_match_is_honoured() {
    let moto = Moto::start();
    let rt = runtime();
    let (s3, _) = rt.block_on(moto.clients());
    rt.block_on(s3.create_bucket().bucket("blobs").send())
        .expect("bucket");
    let small_parts = Multipart {
        threshold_bytes: MIN_PART_BYTES,
        part_bytes: MIN_PART_BYTES,
    };
    let storage =
        S3Storage::new(s3.clone(), "blobs", rt.handle().clone()).with_multipart(small_parts);
    let pending_uploads = || {
        rt.block_on(s3.list_multipart_uploads().bucket("blobs").send())
            .expect("list uploads")
            .uploads()
            .len()
    };
    // 2 × 5 MiB + a short last part, pseudo-random so nothing compresses or repeats.
    let mut seed = 0x2545_F491_u32;
    let data: Vec<u8> = (0..2 * MIN_PART_BYTES as usize + 123_457)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        })
        .collect();
    let t = Instant::now();
    let info = storage
        .put("big/out.bin", &data, "application/octet-stream")
        .expect(
            "multipart put (moto 5.2.1 fails here, getmoto/moto#10055: bash .ci/setup upgrades it)",
        );
    let put_time = t.elapsed();
    assert!(info.etag.ends_with("-3"), "three parts: {}", info.etag);
    assert_eq!(info.bytes, data.len() as u64);
    let back = storage.get("big/out.bin").expect("get");
    assert!(back == data, "read back byte-identical");
    assert_eq!(pending_uploads(), 0);
    eprintln!(
        "multipart: {} bytes in 3 parts of {MIN_PART_BYTES} (last {}), PUT {put_time:?}",
        data.len(),
        data.len() - 2 * MIN_PART_BYTES as usize
    );
    // Below the threshold: one PUT.
    let one = storage
        .put("small.bin", &data[..1000], "application/octet-stream")
        .expect("put");
    assert!(!one.etag.contains('-'), "{}", one.etag);

    // A part that fails to send aborts the whole upload: no parts left, no object.
    let failing =
        aws_sdk_s3::Client::from_conf(s3.config().to_builder().interceptor(FailPart(2)).build());
    let broken = S3Storage::new(failing, "blobs", rt.handle().clone()).with_multipart(small_parts);
    let err = broken
        .put("big/failed.bin", &data, "application/octet-stream")
        .expect_err("part 2 cannot be sent");
    assert!(err.to_string().contains("part 2"), "{err}");
    assert_eq!(pending_uploads(), 0, "the failed upload was aborted");
    assert_eq!(storage.head("big/failed.bin").expect("head"), None);

    // What moto does with If-None-Match: * on PUT: 412 PreconditionFailed once the key exists.
    // The HTTP status and error code of a create-if-absent PUT.
    let create = |body: &'static [u8]| {
        let put = rt.block_on(
            s3.put_object()
                .bucket("blobs")
                .key("manifest.json")
                .body(ByteStream::from_static(body))
                .if_none_match("*")
                .send(),
        );
        match put {
            Ok(_) => (200, None),
            Err(e) => (
                e.raw_response().map_or(0, |r| r.status().as_u16()),
                aws_sdk_s3::error::ProvideErrorMetadata::code(&e).map(str::to_string),
            ),
        }
    };
    assert_eq!(create(b"{}"), (200, None));
    assert_eq!(
        create(b"{\"late\":true}"),
        (412, Some("PreconditionFailed".to_string())),
        "the key exists"
    );
    assert_eq!(storage.get("manifest.json").expect("get"), b"{}");
    // …which the engine's create-if-absent reports as "already exists", single and multipart.
    assert!(
        storage
            .put_if_absent("m2.json", b"{}", "application/json")
            .expect("put")
            .is_some()
    );
    assert_eq!(
        storage
            .put_if_absent("m2.json", b"{}", "application/json")
            .expect("put"),
        None
    );
    assert!(
        storage
            .put_if_absent("big/m.bin", &data, "application/octet-stream")
            .expect("put")
            .is_some()
    );
    assert_eq!(
        storage
            .put_if_absent("big/m.bin", &data[1..], "application/octet-stream")
            .expect("put"),
        None
    );
    assert_eq!(
        pending_uploads(),
        0,
        "the losing multipart upload was aborted"
    );
    assert!(
        storage.get("big/m.bin").expect("get") == data,
        "the first writer's bytes stay"
    );
}

#[test]
fn sqs_batch_deletes_report_an_invalid_receipt_and_delete_the_rest() {
    let moto = Moto::start();
    let rt = runtime();
    let (_, sqs) = rt.block_on(moto.clients());
    let url = rt.block_on(create_queue(&sqs, "batch", &[]));
    let queue = SqsQueue::new(sqs.clone(), url.clone(), rt.handle().clone());
    for i in 0..12 {
        queue.send(&format!("m{i}")).expect("send");
    }
    let mut got = Vec::new();
    while got.len() < 12 {
        got.extend(queue.receive(10, Duration::from_secs(60)).expect("receive"));
    }
    let mut receipts: Vec<&str> = got.iter().map(|m| m.receipt.as_str()).collect();
    receipts.insert(5, "not-a-receipt-handle");
    // 13 entries: two DeleteMessageBatch calls (10 + 3), one entry failing.
    let results = queue.delete_batch(&receipts);
    assert_eq!(results.len(), 13);
    for (i, r) in results.iter().enumerate() {
        if i == 5 {
            assert_eq!(
                r,
                &Err(QueueError::StaleReceipt("not-a-receipt-handle".into())),
                "an invalid receipt is never a successful delete"
            );
        } else {
            assert_eq!(r, &Ok(()), "entry {i}");
        }
    }
    let attrs = rt
        .block_on(
            sqs.get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::All)
                .send(),
        )
        .expect("attributes");
    let count = |name| {
        attrs
            .attributes()
            .and_then(|m| m.get(&name))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(count(QueueAttributeName::ApproximateNumberOfMessages), "0");
    assert_eq!(
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        "0",
        "the 12 valid receipts were deleted"
    );
}

/// The DynamoDB job index on moto: the same rules as SQLite — ids unique, newest first in
/// pages (by status too), a stale conditional write loses, a plain upload's job created when
/// it starts, settings written once, keys kept.
#[test]
fn the_dynamodb_index_keeps_the_rules_of_the_sqlite_one() {
    use mediaflow::index::dynamodb::DynamoIndex;
    use mediaflow::index::{ApiKey, Change, Cursor, JobIndex, JobRecord, JobStatus};
    let moto = Moto::start();
    let rt = runtime();
    let client = rt.block_on(async { aws_sdk_dynamodb::Client::new(&moto.sdk_config().await) });
    rt.block_on(mediaflow::api::admin::create_table(&client, "jobs"))
        .expect("table");
    let index = DynamoIndex::new(client.clone(), "jobs", rt.handle().clone());
    for i in 0..7i64 {
        let status = if i % 2 == 0 {
            JobStatus::Queued
        } else {
            JobStatus::Failed
        };
        let r = JobRecord::new(&format!("j{i}"), status, "p", vec![], 100 + i / 2);
        assert!(index.create(&r).expect("create"));
        assert!(!index.create(&r).expect("again"), "ids are unique");
    }
    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = index.list(None, 3, cursor.as_ref()).expect("list");
        seen.extend(page.jobs.iter().map(|j| j.id.clone()));
        match page.next {
            Some(c) => cursor = Some(Cursor::decode(&c.encode()).expect("cursor")),
            None => break,
        }
    }
    assert_eq!(seen, ["j6", "j5", "j4", "j3", "j2", "j1", "j0"]);
    let failed = index
        .list(Some(JobStatus::Failed), 10, None)
        .expect("by status");
    let ids: Vec<_> = failed.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["j5", "j3", "j1"]);
    let started = index
        .update(
            "plain",
            &Change::Started {
                attempt: 1,
                profile: "p".into(),
                sources: vec!["s3://uploads/a.png".into()],
                output_bucket: "renditions".into(),
            },
        )
        .expect("created when it starts");
    assert_eq!(started.status, JobStatus::Running);
    let asked = index
        .update("plain", &Change::CancelRequested)
        .expect("cancel");
    assert!(asked.cancel_requested);
    assert!(
        !index
            .put(
                &JobRecord {
                    rev: 9,
                    ..asked.clone()
                },
                Some(0)
            )
            .expect("put"),
        "a stale write loses"
    );
    let canceled = index.update("plain", &Change::Canceled).expect("canceled");
    assert_eq!((canceled.status, canceled.rev), (JobStatus::Canceled, 2));
    assert!(
        index.update("j1", &Change::CancelRequested).is_err(),
        "a failed job cannot be canceled"
    );
    assert_eq!(index.setting("secret", "a").expect("set"), "a");
    assert_eq!(index.setting("secret", "b").expect("kept"), "a");
    let key = ApiKey {
        name: "ci".into(),
        sha256: "ab".repeat(32),
        scopes: vec!["read".into()],
        created_ms: 1,
        revoked_ms: None,
    };
    index.put_key(&key).expect("key");
    assert_eq!(index.keys().expect("keys"), [key]);

    // With a retention, finished records carry the table's TTL attribute; others do not.
    let kept = DynamoIndex::new(client.clone(), "jobs", rt.handle().clone()).with_retention(2);
    let mut done = JobRecord::new("done", JobStatus::Succeeded, "p", vec![], 5_000_000);
    done.updated_ms = 7_000_500;
    let busy = JobRecord::new("busy", JobStatus::Running, "p", vec![], 5_000_000);
    assert!(kept.create(&done).expect("done") && kept.create(&busy).expect("busy"));
    let expires = |id: &str| {
        let out = rt
            .block_on(
                client
                    .get_item()
                    .table_name("jobs")
                    .key(
                        "pk",
                        aws_sdk_dynamodb::types::AttributeValue::S(format!("job#{id}")),
                    )
                    .send(),
            )
            .expect("get item");
        out.item()
            .and_then(|i| i.get("expires_at"))
            .and_then(|v| v.as_n().ok())
            .cloned()
    };
    assert_eq!(
        expires("done").as_deref(),
        Some("179800"),
        "7000 s + 2 days"
    );
    assert_eq!(expires("busy"), None, "a running job does not expire");
    assert_eq!(expires("plain"), None, "no retention: kept forever");
}

/// `serve --no-worker` and a worker on moto (S3, SQS, DynamoDB), as on ECS.
struct AwsServe {
    stack: Stack,
    api: std::process::Child,
    worker: std::process::Child,
    base: String,
}

impl AwsServe {
    /// `api_extra` in `[api]`, `extra` after.
    fn start(api_extra: &str, extra: &str) -> AwsServe {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let stack = Stack::start(
            30,
            3,
            "",
            &format!(
                "[api]\nindex_table = \"jobs\"\nlisten = \"127.0.0.1:{port}\"\n{api_extra}\n{extra}"
            ),
        );
        let client =
            stack.block(async { aws_sdk_dynamodb::Client::new(&stack.moto.sdk_config().await) });
        stack
            .block(mediaflow::api::admin::create_table(&client, "jobs"))
            .expect("table");
        let api = stack.workers.spawn_args(&["serve", "--no-worker"], &[]);
        let worker = stack.workers.spawn();
        let s = AwsServe {
            stack,
            api,
            worker,
            base: format!("http://127.0.0.1:{port}"),
        };
        s.stack
            .wait_until("serve answers", Duration::from_secs(60), || {
                s.get("/v1/jobs")["jobs"].is_array()
            });
        s
    }

    /// curl `args`; the HTTP status and the body.
    fn curl(args: &[&str]) -> (String, Vec<u8>) {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "120", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl");
        let mut body = out.stdout;
        let split = body.iter().rposition(|&b| b == b'\n').unwrap_or(0);
        let status = String::from_utf8_lossy(&body[split..]).trim().to_string();
        body.truncate(split);
        (status, body)
    }

    fn get(&self, path: &str) -> serde_json::Value {
        let (_, body) = Self::curl(&[&format!("{}{path}", self.base)]);
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
    }

    /// `POST /v1/uploads` for `bytes` of `content_type`.
    fn create_upload(&self, body: &serde_json::Value) -> serde_json::Value {
        let (status, out) = Self::curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body.to_string(),
            &format!("{}/v1/uploads", self.base),
        ]);
        assert_eq!(status, "201", "{}", String::from_utf8_lossy(&out));
        serde_json::from_slice(&out).expect("upload JSON")
    }

    /// PUT the file at `path` to `url` (with `headers`); the status.
    fn put(path: &std::path::Path, url: &str, headers: &[&str]) -> String {
        let mut args = vec!["-o", "/dev/null", "-X", "PUT"];
        for h in headers {
            args.extend(["-H", h]);
        }
        let data = format!("@{}", path.display());
        args.extend(["--data-binary", &data, url]);
        Self::curl(&args).0
    }

    fn wait_succeeded(&self, id: &str, within: Duration) -> serde_json::Value {
        let mut job = serde_json::Value::Null;
        self.stack
            .wait_until("the job succeeded in DynamoDB", within, || {
                job = self.get(&format!("/v1/jobs/{id}"));
                job["status"] == "succeeded"
            });
        job
    }

    /// SIGTERM both; both exit 0.
    fn stop(mut self) {
        signal(&self.api, libc::SIGTERM);
        signal(&self.worker, libc::SIGTERM);
        let workers = &self.stack.workers;
        assert_eq!(workers.wait_exit(&mut self.api, Duration::from_secs(30)), 0);
        assert_eq!(
            workers.wait_exit(&mut self.worker, Duration::from_secs(60)),
            0
        );
    }
}

/// `serve --no-worker` and a worker on moto (S3, SQS, DynamoDB), as on ECS: an upload through
/// the S3 presigned PUT the API returns, the S3 → SQS notification, the worker writing the
/// DynamoDB index, the job read back `succeeded` with presigned output URLs that download.
#[test]
fn serve_on_aws_hands_out_presigned_uploads_and_follows_jobs_in_dynamodb() {
    let s = AwsServe::start("", "");
    let data = png(3);
    let up = s.create_upload(
        &serde_json::json!({"filename": "phone.png", "content_type": "image/png", "bytes": data.len()}),
    );
    let url = up["url"].as_str().expect("url").to_string();
    assert!(
        url.contains("X-Amz-Signature"),
        "an S3 presigned URL: {url}"
    );
    let file = s.stack.workers.dir.path().join("phone.png");
    std::fs::write(&file, &data).expect("write");
    assert_eq!(
        AwsServe::put(&file, &url, &["Content-Type: image/png"]),
        "200"
    );
    let id = up["job_id"].as_str().expect("id").to_string();
    let job = s.wait_succeeded(&id, Duration::from_secs(60));
    let output = job["outputs"][0]["url"].as_str().expect("output url");
    let (_, got) = AwsServe::curl(&[output]);
    assert!(
        got.starts_with(b"\x89PNG"),
        "the presigned output URL downloads the PNG"
    );
    assert_eq!(s.stack.manifests().len(), 1);
    s.stop();
}

/// A > 20 MB video sent to S3 in presigned parts (plain HTTP PUTs, as a browser would) and
/// completed through the API: completion refused while a part is missing, then S3 assembles
/// the object byte for byte, its event starts the job, and the job succeeds.
#[test]
fn serve_on_aws_takes_a_large_video_in_presigned_parts() {
    let s = AwsServe::start(
        "multipart_threshold_bytes = 8388608\nmultipart_part_bytes = 5242880",
        "[profiles.clip]\nrenditions = []\n[profiles.clip.video]\nladder = [{ size = 240, bitrate_kbps = 300 }]\nhls = false\n",
    );
    let dir = s.stack.workers.dir.path().to_path_buf();
    let data = crate::video::noisy_clip(&dir.join("big.mp4"), 2.5);
    assert!(data.len() > 20_000_000, "{} bytes", data.len());
    let up = s.create_upload(&serde_json::json!({
        "filename": "big.mp4", "content_type": "video/mp4", "bytes": data.len(), "profile": "clip"
    }));
    assert_eq!(up["method"], "multipart", "{up}");
    let parts = up["parts"].as_array().expect("parts").clone();
    assert_eq!(parts.len(), data.len().div_ceil(5 << 20));
    let complete = up["complete_url"]
        .as_str()
        .expect("complete url")
        .to_string();
    let mut offset = 0;
    let mut sent = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let len = p["bytes"].as_u64().expect("bytes") as usize;
        let url = p["url"].as_str().expect("part url");
        assert!(
            url.contains("X-Amz-Signature") && url.contains("partNumber="),
            "{url}"
        );
        let file = dir.join(format!("part-{i}"));
        std::fs::write(&file, &data[offset..offset + len]).expect("part");
        offset += len;
        // No Content-Type, as a browser sends a slice of a File; the ETag read as a page
        // reads it (the bucket's CORS exposes it).
        let (status, head) = AwsServe::curl(&[
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-X",
            "PUT",
            "-H",
            "Content-Type:",
            "--data-binary",
            &format!("@{}", file.display()),
            url,
        ]);
        assert_eq!(status, "200", "part {}", i + 1);
        let head = String::from_utf8_lossy(&head).to_string();
        let etag = head
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("etag"))
            })
            .map(|(_, v)| v.trim().to_string())
            .expect("an ETag");
        sent.push(serde_json::json!({"number": i + 1, "etag": etag}));
    }
    assert_eq!(offset, data.len());
    let finish = |parts: &[serde_json::Value]| {
        let body = serde_json::json!({ "parts": parts }).to_string();
        AwsServe::curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
            &complete,
        ])
    };
    let (status, early) = finish(&sent[..sent.len() - 1]);
    assert_eq!(status, "409", "{}", String::from_utf8_lossy(&early));
    let (status, done) = finish(&sent);
    assert_eq!(status, "200", "{}", String::from_utf8_lossy(&done));
    let id = up["job_id"].as_str().expect("id").to_string();
    let key = format!("uploads/{id}/big.mp4");
    let stored = s.stack.block(async {
        let o = s
            .stack
            .s3
            .get_object()
            .bucket(UPLOADS)
            .key(&key)
            .send()
            .await
            .expect("object");
        o.body.collect().await.expect("body").into_bytes()
    });
    assert!(
        stored.as_ref() == data.as_slice(),
        "S3 assembled the upload byte for byte"
    );
    let job = s.wait_succeeded(&id, Duration::from_secs(180));
    assert!(
        job["outputs"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["format"] == "mp4")),
        "{job}"
    );
    s.stop();
}
