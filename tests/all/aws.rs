//! The worker against a real S3/SQS endpoint (moto on 127.0.0.1): an upload to the source
//! bucket reaches the queue through the bucket's S3 → SQS notification, the worker fetches it
//! from S3, writes outputs and the manifest back to S3, ignores moto's `s3:TestEvent`, and a
//! poison message reaches the dead-letter queue by SQS redrive; SIGTERM exits 0.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use mediaflow_tests::{Moto, encode, photo_like};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[allow(unsafe_code)] // kill(2) for SIGTERM, to our own child.
fn sigterm(child: &Child) {
    // SAFETY: signalling a child process we spawned.
    let r = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(r, 0);
}

#[test]
fn an_upload_flows_through_s3_notifications_sqs_and_back_to_s3() {
    let moto = Moto::start();
    let rt = runtime();
    let (s3, sqs) = rt.block_on(moto.clients());
    let (jobs_url, dlq_url) = rt.block_on(async {
        for b in ["uploads", "renditions"] {
            s3.create_bucket().bucket(b).send().await.expect("bucket");
        }
        let dlq = sqs
            .create_queue()
            .queue_name("jobs-dlq")
            .send()
            .await
            .expect("dlq");
        let dlq_url = dlq.queue_url().expect("url").to_string();
        let dlq_arn = queue_arn(&sqs, &dlq_url).await;
        let redrive = format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"2"}}"#);
        let jobs = sqs
            .create_queue()
            .queue_name("jobs")
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .attributes(QueueAttributeName::VisibilityTimeout, "10")
            .send()
            .await
            .expect("queue");
        let jobs_url = jobs.queue_url().expect("url").to_string();
        let jobs_arn = queue_arn(&sqs, &jobs_url).await;
        let notify = NotificationConfiguration::builder()
            .queue_configurations(
                QueueConfiguration::builder()
                    .queue_arn(jobs_arn)
                    .events(Event::S3ObjectCreated)
                    .build()
                    .expect("qc"),
            )
            .build();
        s3.put_bucket_notification_configuration()
            .bucket("uploads")
            .notification_configuration(notify)
            .send()
            .await
            .expect("notification");
        let png = encode(&photo_like(120, 80), image::ImageFormat::Png);
        s3.put_object()
            .bucket("uploads")
            .key("photos/My Photo.png")
            .body(ByteStream::from(png))
            .send()
            .await
            .expect("upload");
        sqs.send_message()
            .queue_url(&jobs_url)
            .message_body("this is not a job")
            .send()
            .await
            .expect("poison");
        (jobs_url, dlq_url)
    });

    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("mediaflow.toml");
    std::fs::write(
        &config,
        format!(
            "default_profile = \"small\"\n[profiles.small]\nrenditions = [{{ name = \"s\", width = 60, format = \"png\" }}]\n[worker]\nqueue_url = \"{jobs_url}\"\ns3_path_style = true\nvisibility_timeout_secs = 10\nconcurrency = 2\n"
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.path().join("worker.log")).expect("log");
    let mut worker = Command::new(env!("CARGO_BIN_EXE_mediaflow-cli"))
        .args(["worker", "--config"])
        .arg(&config)
        .envs(moto.env())
        .env(
            "XDG_CACHE_HOME",
            std::env::temp_dir().join("mediaflow-cli-test-cache"),
        )
        .env("MEDIAFLOW_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("worker");
    let logs = || std::fs::read_to_string(dir.path().join("worker.log")).unwrap_or_default();

    // The manifest appears under <profile>/<key>/<etag>/ in the output bucket.
    let started = Instant::now();
    let manifest: serde_json::Value = loop {
        let found = rt.block_on(async {
            let list = s3
                .list_objects_v2()
                .bucket("renditions")
                .prefix("small/photos/My Photo.png/")
                .send()
                .await
                .expect("list");
            let key = list
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .find(|k| k.ends_with("/manifest.json"))
                .map(str::to_string)?;
            let body = s3
                .get_object()
                .bucket("renditions")
                .key(&key)
                .send()
                .await
                .expect("get")
                .body
                .collect()
                .await
                .expect("body");
            serde_json::from_slice(&body.into_bytes()).ok()
        });
        if let Some(m) = found {
            break m;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no manifest; logs:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(manifest["status"], "succeeded", "{manifest}");
    assert_eq!(
        manifest["source"]["uri"],
        "s3://uploads/photos/My Photo.png"
    );
    let out_uri = manifest["outputs"][0]["uri"]
        .as_str()
        .expect("uri")
        .to_string();
    let out_key = out_uri.trim_start_matches("s3://renditions/").to_string();
    let bytes = rt.block_on(async {
        s3.get_object()
            .bucket("renditions")
            .key(&out_key)
            .send()
            .await
            .expect("output")
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes()
    });
    assert_eq!(
        image::load_from_memory(&bytes)
            .expect("output decodes")
            .width(),
        60
    );

    // The poison message is redriven to the DLQ after maxReceiveCount = 2 receives.
    let started = Instant::now();
    loop {
        let n = rt.block_on(async {
            let a = sqs
                .get_queue_attributes()
                .queue_url(&dlq_url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .send()
                .await
                .expect("attrs");
            a.attributes()
                .and_then(|m| m.get(&QueueAttributeName::ApproximateNumberOfMessages))
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        });
        if n == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "poison message not dead-lettered; logs:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let t = Instant::now();
    sigterm(&worker);
    let status = loop {
        if let Some(s) = worker.try_wait().expect("wait") {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "worker did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{}", logs());
    let l = logs();
    assert!(
        l.contains("s3:TestEvent"),
        "moto's test event was acknowledged:\n{l}"
    );
    assert!(l.contains("left for the dead-letter queue"), "{l}");
    let _ = jobs_url;
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
