//! Regression tests for the faults found when the worker was driven through a full disk, kill -9,
//! SIGTERM and poison messages (issue "One job lifecycle with one set of failure rules"), each
//! named after what it pins: a nearly full disk (the data directory and `TMPDIR` on a small
//! tmpfs, filled, then freed) loses no job — every source ends with exactly one manifest or a
//! dead letter with its reason — and leaves no temporary file, with `/readyz` unready while it
//! is full; a killed worker's temporary files are gone after the next clean stop; a dead letter
//! carries its reason, a bad message is an error once and counted once, and its
//! `dead-lettered` event names the source and profile it meant; a queue that cannot be opened is
//! named with what to check; log lines say `error_code` and lowercase statuses; notification
//! counts reach `/metrics`; a video's outputs have unique names; an idle SQS worker stops within
//! its long poll, and an SQS dead letter carries its reason as a message attribute.

use crate::harness::{Workers, config_text, signal};
use crate::ops::{get, json_lines, ops_addr, parse_exposition, sample};
use mediaflow::queue::local::LocalQueue;
use mediaflow_tests::{Moto, encode, photo_like};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(50);

/// Workers whose data directory is `data_dir`, with `worker_extra` in `[worker]` and `env`.
fn workers_at(
    data_dir: impl Fn(&Path) -> PathBuf,
    worker_extra: &str,
    env: Vec<(String, String)>,
) -> Workers {
    Workers::new(|dir| config_text(&data_dir(dir), worker_extra, ""), env)
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

fn png(w: &Workers, name: &str, seed: u32) -> PathBuf {
    let p = w.dir.path().join(name);
    std::fs::write(
        &p,
        encode(&photo_like(40 + seed % 13, 30), image::ImageFormat::Png),
    )
    .expect("write");
    p
}

/// Every file under `root` (recursively), as paths relative to it.
fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap_or(&p).display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// A small tmpfs mounted for the test's life (needs root, as CI and this machine run).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs at {} needs root (as in CI): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at.to_path_buf())
    }

    /// Fill the filesystem but for `leave` bytes (room to open the queue and start a few
    /// jobs); the filler is removed by [`SmallDisk::free`].
    fn fill(&self, leave: u64) {
        let mut f = std::fs::File::create(self.0.join("filler")).expect("filler");
        let chunk = vec![0x5au8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let len = f.metadata().expect("filler size").len();
        f.set_len(len.saturating_sub(leave))
            .expect("leave a little room");
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).expect("free the disk");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_nearly_full_disk_loses_no_job_and_leaves_no_temporary_file() {
    const SOURCES: usize = 40;
    let base = tempfile::tempdir().expect("tmp");
    let disk = SmallDisk::mount(&base.path().join("small"), "24m");
    let tmp = disk.0.join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    let data = disk.0.join("data");
    let w = workers_at(
        |_| data.clone(),
        "visibility_timeout_secs = 5\nmax_receive_count = 4",
        vec![("TMPDIR".into(), tmp.display().to_string())],
    );
    let files: Vec<PathBuf> = (0..SOURCES as u32)
        .map(|i| png(&w, &format!("s{i:02}.png"), i))
        .collect();
    submit(&w, &files);

    // Nearly full as the worker starts: a few jobs fit, then receives, source copies,
    // outputs and manifests all meet ENOSPC for a few seconds.
    disk.fill(300 * 1024);
    let mut worker = w.spawn();
    let addr = ops_addr(&w);
    let mut why = String::new();
    w.wait_until(
        "/readyz unready on the full disk",
        Duration::from_secs(30),
        POLL,
        || {
            let (status, body) = get(addr, "/readyz");
            why = body;
            status == 503 && (why.contains("queue:") || why.contains("store:"))
        },
    );
    assert!(why.contains("failed in a row"), "{why}");
    std::thread::sleep(Duration::from_secs(2));
    disk.free();

    let queue = || LocalQueue::open(&data.join("queue.db"), 4).expect("queue");
    w.wait_until(
        "every message settled",
        Duration::from_secs(120),
        POLL,
        || queue().depth().is_ok_and(|(main, _)| main == 0),
    );
    w.wait_until("ready again", Duration::from_secs(30), POLL, || {
        get(addr, "/readyz").0 == 200
    });
    signal(&worker, libc::SIGTERM);
    assert_eq!(w.wait_exit(&mut worker, Duration::from_secs(30)), 0);

    // Every source: exactly one manifest (succeeded: a full disk is never the input's fault)
    // or a dead letter with its reason.
    let mut recorded: BTreeMap<String, usize> = BTreeMap::new();
    for m in crate::harness::manifests_under(&data.join("buckets/renditions")) {
        assert_eq!(m["status"], "succeeded", "{m}");
        let key = m["source"]["uri"]
            .as_str()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        *recorded.entry(key).or_default() += 1;
    }
    let dead = queue().dead_letters_with_reasons().expect("dead letters");
    for (body, reason) in &dead {
        assert!(
            !reason.trim().is_empty(),
            "a dead letter without a reason: {body}"
        );
    }
    for i in 0..SOURCES {
        let key = format!("s{i:02}.png");
        let manifests = recorded.get(&key).copied().unwrap_or(0);
        let letters = dead.iter().filter(|(b, _)| b.contains(&key)).count();
        assert_eq!(
            (manifests + letters, manifests <= 1),
            (1, true),
            "{key}: {manifests} manifests, {letters} dead letters; logs:\n{}",
            w.logs()
        );
    }
    eprintln!(
        "full disk: {} recorded, {} dead-lettered ({:?})",
        recorded.len(),
        dead.len(),
        dead.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>()
    );
    // No temporary file anywhere after the clean stop.
    let leftovers: Vec<String> = files_under(&tmp)
        .into_iter()
        .chain(
            files_under(&data.join("buckets"))
                .into_iter()
                .filter(|f| f.contains(".tmp")),
        )
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn kill_9_mid_job_leaves_no_temporary_file_after_the_next_clean_stop() {
    let base = tempfile::tempdir().expect("tmp");
    let tmp = base.path().join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    let w = Workers::new(
        |dir| {
            config_text(
                &dir.join("data"),
                "visibility_timeout_secs = 3\nmax_receive_count = 5",
                "[profiles.slow]\nrenditions = [{ name = \"s\", width = 48, format = \"png\" }]\nmetadata = [{ plugin = \"slow@0.1\" }]\n",
            )
        },
        vec![("TMPDIR".into(), tmp.display().to_string())],
    );
    let plugin = w.slow_plugin(3_000);
    w.edit_config(|c| {
        c.replace("default_profile = \"small\"", "default_profile = \"slow\"")
            + &format!("[plugins]\nlocal = [\"{}\"]\n", plugin.display())
    });
    submit(&w, &[png(&w, "held.png", 1)]);
    let mut first = w.spawn();
    // Killed while its job runs: its source copy sits in its scratch directory.
    w.wait_until(
        "the job's source copy",
        Duration::from_secs(30),
        POLL,
        || {
            files_under(&tmp)
                .iter()
                .any(|f| f.contains("/job-") && f.ends_with("source-0"))
        },
    );
    signal(&first, libc::SIGKILL);
    let _ = w.wait_exit(&mut first, Duration::from_secs(10));
    assert!(!files_under(&tmp).is_empty(), "the kill left files behind");

    let mut second = w.spawn();
    w.wait_until("the job, redone", Duration::from_secs(60), POLL, || {
        !crate::harness::manifests_under(&w.dir.path().join("data/buckets/renditions")).is_empty()
    });
    signal(&second, libc::SIGTERM);
    assert_eq!(w.wait_exit(&mut second, Duration::from_secs(20)), 0);
    let left = files_under(&tmp);
    assert!(left.is_empty(), "after a clean stop: {left:?}");
    let partial: Vec<String> = files_under(&w.dir.path().join("data/buckets"))
        .into_iter()
        .filter(|f| f.contains(".tmp"))
        .collect();
    assert!(partial.is_empty(), "{partial:?}");
}

#[test]
fn dead_letters_carry_their_reason_and_a_bad_message_is_an_error_once_counted_once() {
    // Dead-lettered events go to the log sink, whose debug line carries the event body.
    let w = Workers::new(
        |dir| {
            config_text(
                &dir.join("data"),
                "visibility_timeout_secs = 4\nmax_receive_count = 3",
                "[[notify.rules]]\nplugin = \"notify-rules@^1\"\nconfig = { on_succeeded = \"\", on_failed = \"\", on_dead_lettered = \"log\" }\n",
            )
        },
        Vec::new(),
    );
    let queue = || LocalQueue::open(&w.dir.path().join("data/queue.db"), 3).expect("queue");
    queue().send("definitely not json").expect("poison");
    // An explicit job in a version this engine does not read, naming its source and profile.
    queue()
        .send(r#"{"version":2,"sources":["s3://uploads/meant.png"],"profile":"small"}"#)
        .expect("poison");
    // An explicit job without sources is called what it is.
    queue()
        .send(r#"{"version":1,"profile":"small"}"#)
        .expect("poison");
    let mut worker = w.spawn_with(&[("MEDIAFLOW_LOG", "info,mediaflow::notify=debug")]);
    let addr = ops_addr(&w);
    w.wait_until("three dead letters", Duration::from_secs(30), POLL, || {
        queue().depth().is_ok_and(|d| d == (0, 3))
    });
    let dead: BTreeMap<String, String> = queue()
        .dead_letters_with_reasons()
        .expect("dlq")
        .into_iter()
        .collect();
    assert!(dead["definitely not json"].contains("not JSON"), "{dead:?}");
    let no_sources = &dead[r#"{"version":1,"profile":"small"}"#];
    assert!(
        no_sources.contains("explicit job") && no_sources.contains("sources"),
        "{no_sources}"
    );
    let metrics = parse_exposition(&get(addr, "/metrics").1);
    assert_eq!(
        sample(
            &metrics,
            "mediaflow_messages_total",
            &[("outcome", "poison")]
        ),
        Some(3.0),
        "each bad message counted once, not per receive"
    );
    signal(&worker, libc::SIGTERM);
    assert_eq!(w.wait_exit(&mut worker, Duration::from_secs(20)), 0);
    let lines = json_lines(&w.logs());
    let errors = lines
        .iter()
        .filter(|l| {
            l["level"] == "ERROR"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("left for the dead-letter queue"))
        })
        .count();
    assert_eq!(errors, 3, "one ERROR per bad message, on its last receive");
    // The dead-lettered event names the upload the message meant (the log sink's body line).
    let event = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l["body"].as_str()?).ok())
        .find(|e| e["status"] == "dead-lettered" && e["source"] == "s3://uploads/meant.png");
    let event =
        event.unwrap_or_else(|| panic!("no dead-lettered event naming its source:\n{}", w.logs()));
    assert_eq!(event["profile"], "small");
    assert_eq!(event["error"]["code"], "bad_message");
}

#[test]
fn log_lines_say_error_code_and_lowercase_status_and_notifications_reach_metrics() {
    let w = workers_at(|dir| dir.join("data"), "", Vec::new());
    let good = png(&w, "good.png", 2);
    let broken = w.dir.path().join("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\nnot really a png").expect("write");
    submit(&w, &[good, broken]);
    let mut worker = w.spawn();
    let addr = ops_addr(&w);
    w.wait_until("two manifests", Duration::from_secs(30), POLL, || {
        crate::harness::manifests_under(&w.dir.path().join("data/buckets/renditions")).len() == 2
    });
    let metrics = parse_exposition(&get(addr, "/metrics").1);
    signal(&worker, libc::SIGTERM);
    assert_eq!(w.wait_exit(&mut worker, Duration::from_secs(20)), 0);
    let lines = json_lines(&w.logs());
    assert!(
        lines.iter().all(|l| l.get("code").is_none()),
        "no line says `code` (README: `error_code`)"
    );
    let failed = lines
        .iter()
        .find(|l| l["message"] == "job failed")
        .expect("a job failed line");
    assert_eq!(failed["error_code"], "corrupt_input", "{failed}");
    let statuses: Vec<&str> = lines
        .iter()
        .filter(|l| l["message"] == "job recorded")
        .filter_map(|l| l["status"].as_str())
        .collect();
    assert_eq!(
        {
            let mut s = statuses.clone();
            s.sort();
            s
        },
        ["failed", "succeeded"],
        "as manifests and metrics say them"
    );
    // The default rule's two events were delivered to the log sink: counted on /metrics.
    let delivered = sample(
        &metrics,
        "mediaflow_notifications_total",
        &[("sink", "log"), ("kind", "log"), ("outcome", "delivered")],
    );
    assert!(delivered.is_some_and(|n| n >= 1.0), "{delivered:?}");
}

#[test]
fn a_worker_that_cannot_open_its_queue_names_the_file_and_what_to_check() {
    let w = workers_at(|dir| dir.join("data"), "", Vec::new());
    let db = w.dir.path().join("data/queue.db");
    std::fs::create_dir_all(&db).expect("a directory where the database should be");
    let mut worker = w.spawn();
    let code = w.wait_exit(&mut worker, Duration::from_secs(30));
    assert_ne!(code, 0);
    let logs = w.logs();
    assert!(
        logs.contains(&db.display().to_string()) && logs.contains("free space"),
        "the error names the database and what to check: {logs}"
    );
}

#[test]
fn a_videos_outputs_each_have_their_own_name() {
    let dir = tempfile::tempdir().expect("tmp");
    let clip = dir.path().join("clip.mp4");
    let made = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=10",
        ])
        .args(["-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-y"])
        .arg(&clip)
        .status()
        .expect("ffmpeg");
    assert!(made.success());
    let out = dir.path().join("out");
    let run = crate::cli::command()
        .arg("process")
        .arg(&clip)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("process");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let m: Value =
        serde_json::from_slice(&std::fs::read(out.join("clip/manifest.json")).expect("manifest"))
            .expect("json");
    let names: Vec<&str> = m["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    assert!(
        names.contains(&"thumbs") && names.contains(&"thumbs-vtt"),
        "{names:?}"
    );
}

#[test]
fn on_sqs_an_idle_worker_stops_within_its_long_poll_and_a_dead_letter_carries_its_reason() {
    use aws_sdk_sqs::types::QueueAttributeName;
    let moto = Moto::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (s3, sqs) = rt.block_on(moto.clients());
    let (jobs, dlq) = rt.block_on(async {
        s3.create_bucket()
            .bucket("renditions")
            .send()
            .await
            .expect("bucket");
        let dlq = sqs
            .create_queue()
            .queue_name("jobs-dlq")
            .send()
            .await
            .expect("dlq");
        let dlq = dlq.queue_url().expect("url").to_string();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("arn");
        let arn = arn
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .expect("arn")
            .clone();
        let jobs = sqs
            .create_queue()
            .queue_name("jobs")
            .attributes(
                QueueAttributeName::RedrivePolicy,
                format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"1"}}"#),
            )
            .send()
            .await
            .expect("jobs");
        (jobs.queue_url().expect("url").to_string(), dlq)
    });
    let env = moto
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    // The default long poll (receive_wait_secs not set).
    let w = Workers::new(
        |dir| {
            config_text(
                &dir.join("data"),
                &format!("queue_url = \"{jobs}\"\ns3_path_style = true"),
                "",
            )
        },
        env,
    );
    rt.block_on(
        sqs.send_message()
            .queue_url(&jobs)
            .message_body("not a job")
            .send(),
    )
    .expect("send");
    let mut worker = w.spawn();
    let got = rt.block_on(async {
        let started = Instant::now();
        loop {
            let out = sqs
                .receive_message()
                .queue_url(&dlq)
                .message_attribute_names("All")
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive");
            if let Some(m) = out.messages().first() {
                return m.clone();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no dead letter"
            );
        }
    });
    assert_eq!(got.body(), Some("not a job"));
    let reason = got
        .message_attributes()
        .and_then(|a| a.get("mediaflow-reason"))
        .and_then(|v| v.string_value())
        .unwrap_or_default();
    assert!(reason.contains("not JSON"), "{reason:?}");
    // Idle now: SIGTERM ends it within one long poll (5 s by default), not 20.
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    signal(&worker, libc::SIGTERM);
    assert_eq!(w.wait_exit(&mut worker, Duration::from_secs(30)), 0);
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(7),
        "idle worker took {took:?} to stop"
    );
}
