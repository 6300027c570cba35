//! `mediaflow worker` and `submit` in local mode (embedded queue, filesystem buckets), as real
//! processes: upload → outputs + manifest; duplicate delivery → one set of outputs; a poison
//! message reaches the dead-letter queue; corrupt media gets a failure manifest on its first
//! attempt; SIGTERM drains and exits 0; `kill -9` loses nothing; two workers share 200 jobs
//! with no duplicates.

use crate::harness::{Workers, config_text, signal};
use mediaflow::queue::local::LocalQueue;
use mediaflow_tests::{encode, photo_like};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// Local mode: the shared worker config with the data directory in the temp dir.
struct Setup {
    workers: Workers,
}

impl std::ops::Deref for Setup {
    type Target = Workers;
    fn deref(&self) -> &Workers {
        &self.workers
    }
}

impl Setup {
    fn new(extra: &str) -> Setup {
        Self::with(extra, "")
    }

    /// `worker_extra` goes in `[worker]`, `extra` after it.
    fn with(worker_extra: &str, extra: &str) -> Setup {
        let worker_extra =
            format!("visibility_timeout_secs = 4\nmax_receive_count = 3\n{worker_extra}");
        Setup {
            workers: Workers::new(
                |dir| config_text(&dir.join("data"), &worker_extra, extra),
                Vec::new(),
            ),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn worker(&self) -> Child {
        self.spawn()
    }

    fn submit(&self, files: &[PathBuf]) {
        let mut args = vec!["submit".to_string()];
        args.extend(files.iter().map(|f| f.display().to_string()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.cmd(&argv).output().expect("submit");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn image(&self, name: &str, seed: u32) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(
            &p,
            encode(&photo_like(64 + seed % 7, 48), image::ImageFormat::Png),
        )
        .expect("write");
        p
    }

    fn queue(&self) -> LocalQueue {
        LocalQueue::open(&self.data().join("queue.db"), 3).expect("queue")
    }

    /// Every manifest under the output bucket.
    fn manifests(&self) -> Vec<serde_json::Value> {
        crate::harness::manifests_under(&self.data().join("buckets/renditions"))
    }

    fn wait_for(&self, what: &str, timeout: Duration, mut ok: impl FnMut(&Setup) -> bool) {
        self.wait_until(what, timeout, Duration::from_millis(50), || ok(self));
    }
}

#[test]
fn submitted_uploads_are_processed_then_sigterm_exits_0_promptly() {
    let s = Setup::new("");
    let files: Vec<PathBuf> = (0..3).map(|i| s.image(&format!("in {i}.png"), i)).collect();
    s.submit(&files);
    let mut w = s.worker();
    s.wait_for("3 manifests", Duration::from_secs(60), |s| {
        s.manifests().len() == 3
    });
    for m in s.manifests() {
        assert_eq!(m["status"], "succeeded", "{m}");
        let out = m["outputs"][0]["uri"]
            .as_str()
            .expect("uri")
            .trim_start_matches("file://")
            .to_string();
        let img = image::open(&out).expect("output decodes");
        assert_eq!(img.width(), 48);
        assert!(
            m["source"]["uri"]
                .as_str()
                .is_some_and(|u| u.starts_with("s3://uploads/in ")),
            "{m}"
        );
    }
    s.wait_for("queue empty", Duration::from_secs(10), |s| {
        s.queue().depth().expect("depth") == (0, 0)
    });
    let t = Instant::now();
    signal(&w, libc::SIGTERM);
    assert_eq!(s.wait_exit(&mut w, Duration::from_secs(10)), 0);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "idle worker stops within 1 s of SIGTERM (took {:?})",
        t.elapsed()
    );
}

#[test]
fn duplicate_delivery_produces_one_set_of_identical_outputs() {
    let s = Setup::new("");
    let file = s.image("dup.png", 1);
    s.submit(&[file]);
    // The same event again, as SQS's at-least-once delivery may do.
    let q = s.queue();
    let body = {
        let m = q.receive(1, Duration::ZERO).expect("peek").remove(0);
        q.change_visibility(&m.receipt, Duration::ZERO)
            .expect("release");
        m.body
    };
    q.send(&body).expect("duplicate");
    let mut w = s.worker();
    s.wait_for("both messages settled", Duration::from_secs(60), |s| {
        s.queue().depth().expect("depth") == (0, 0)
    });
    signal(&w, libc::SIGTERM);
    assert_eq!(s.wait_exit(&mut w, Duration::from_secs(10)), 0);
    let manifests = s.manifests();
    assert_eq!(manifests.len(), 1, "one manifest for two deliveries");
    assert!(
        s.logs().contains("already processed") || s.logs().contains("another worker recorded"),
        "{}",
        s.logs()
    );
}

#[test]
fn poison_messages_reach_the_dead_letter_queue_and_corrupt_media_fails_on_the_first_attempt() {
    let s = Setup::new("");
    let corrupt = s.dir.path().join("broken.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nthis is not really a png").expect("write");
    s.submit(&[corrupt]);
    s.queue()
        .send("{\"hello\": \"not a job\"}")
        .expect("poison");
    s.queue().send("definitely not json").expect("poison");
    let mut w = s.worker();
    s.wait_for("failure manifest", Duration::from_secs(30), |s| {
        !s.manifests().is_empty()
    });
    let m = &s.manifests()[0];
    assert_eq!(m["status"], "failed");
    assert_eq!(m["error"]["code"], "corrupt_input");
    // Backoff 1 s then 2 s: the third receive is the last (max_receive_count = 3).
    s.wait_for("two dead letters", Duration::from_secs(30), |s| {
        s.queue().depth().expect("depth") == (0, 2)
    });
    let dead = s.queue().dead_letters().expect("dlq");
    assert!(
        dead.iter().any(|b| b.contains("not a job")) && dead.iter().any(|b| b.contains("not json")),
        "{dead:?}"
    );
    // The worker is still serving.
    s.submit(&[s.image("after.png", 2)]);
    s.wait_for("the next job", Duration::from_secs(30), |s| {
        s.manifests().iter().any(|m| m["status"] == "succeeded")
    });
    signal(&w, libc::SIGTERM);
    assert_eq!(s.wait_exit(&mut w, Duration::from_secs(10)), 0);
    assert!(
        s.logs().contains("left for the dead-letter queue"),
        "the reason is logged"
    );
}

#[test]
fn kill_9_loses_nothing_and_two_workers_share_200_jobs_without_duplicates() {
    let s = Setup::new("");
    let files: Vec<PathBuf> = (0..200)
        .map(|i| s.image(&format!("j{i:03}.png"), i))
        .collect();
    s.submit(&files);
    // A worker killed mid-run: its in-flight messages reappear after the visibility timeout.
    let mut first = s.worker();
    s.wait_for("some progress", Duration::from_secs(60), |s| {
        s.manifests().len() >= 5
    });
    signal(&first, libc::SIGKILL);
    let _ = s.wait_exit(&mut first, Duration::from_secs(10));
    let mut a = s.worker();
    let mut b = s.worker();
    s.wait_for("200 manifests", Duration::from_secs(180), |s| {
        s.manifests().len() >= 200
    });
    s.wait_for("queue drained", Duration::from_secs(30), |s| {
        s.queue().depth().expect("depth") == (0, 0)
    });
    s.stop_all(&mut [&mut a, &mut b], Duration::from_secs(20));
    let manifests = s.manifests();
    assert_eq!(manifests.len(), 200, "every job exactly once");
    let mut sources: Vec<String> = manifests
        .iter()
        .map(|m| m["source"]["uri"].as_str().unwrap_or_default().to_string())
        .collect();
    sources.sort();
    sources.dedup();
    assert_eq!(sources.len(), 200, "no source recorded twice");
    assert!(manifests.iter().all(|m| m["status"] == "succeeded"));
}

#[test]
fn sigterm_releases_jobs_still_running_at_the_drain_deadline() {
    // A large source keeps the job busy past a 1 s drain deadline.
    let s = Setup::new("drain_timeout_secs = 1");
    let big = s.dir.path().join("big.png");
    std::fs::write(
        &big,
        encode(&photo_like(2400, 1800), image::ImageFormat::Png),
    )
    .expect("write");
    s.submit(&[big]);
    let mut w = s.worker();
    s.wait_for("the job to start", Duration::from_secs(30), |s| {
        s.queue().receive_count("1").expect("count") == Some(1)
    });
    std::thread::sleep(Duration::from_millis(200));
    signal(&w, libc::SIGTERM);
    let code = s.wait_exit(&mut w, Duration::from_secs(10));
    assert_eq!(code, 0);
    if s.manifests().is_empty() {
        // Released: visible again at once for another worker, not after the visibility timeout.
        let again = s
            .queue()
            .receive(1, Duration::from_secs(30))
            .expect("receive");
        assert_eq!(again.len(), 1, "released message is visible immediately");
        assert!(
            s.logs().contains("released for another worker"),
            "{}",
            s.logs()
        );
    }
}

#[test]
fn stale_events_and_missing_sources_are_recorded_as_failures() {
    let s = Setup::new("");
    let file = s.image("replaced.png", 3);
    s.submit(&[file]);
    // The object is replaced after its event was sent: the event is stale.
    std::thread::sleep(Duration::from_millis(20));
    let stored = s.data().join("buckets/uploads/replaced.png");
    std::fs::write(
        &stored,
        encode(&photo_like(30, 30), image::ImageFormat::Png),
    )
    .expect("replace");
    // And an event for an object that does not exist.
    s.queue()
        .send(&mediaflow::worker::s3_event(
            "uploads",
            "ghost.png",
            10,
            "e-ghost",
        ))
        .expect("send");
    let mut w = s.worker();
    s.wait_for("two failure manifests", Duration::from_secs(30), |s| {
        s.manifests().len() == 2
    });
    s.wait_for("queue drained", Duration::from_secs(10), |s| {
        s.queue().depth().expect("depth") == (0, 0)
    });
    signal(&w, libc::SIGTERM);
    assert_eq!(s.wait_exit(&mut w, Duration::from_secs(10)), 0);
    let messages: Vec<String> = s
        .manifests()
        .iter()
        .map(|m| {
            assert_eq!(m["status"], "failed", "{m}");
            m["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("stale event") && m.contains("replaced")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("ghost.png does not exist")),
        "{messages:?}"
    );
}

#[test]
fn a_job_longer_than_3x_the_visibility_timeout_is_processed_once() {
    // A plugin that takes 13 s on a queue whose visibility timeout is 4 s: only the heartbeat
    // keeps the message from being handed to the second worker.
    let s = Setup::with(
        "",
        "[profiles.slow]\nrenditions = [{ name = \"s\", width = 48, format = \"png\" }]\nmetadata = [{ plugin = \"slow@0.1\" }]\n",
    );
    let plugin = s.slow_plugin(13_000);
    s.edit_config(|c| {
        c.replace("default_profile = \"small\"", "default_profile = \"slow\"")
            + &format!("[plugins]\nlocal = [\"{}\"]\n", plugin.display())
    });
    s.submit(&[s.image("long.png", 4)]);
    let t = Instant::now();
    let mut a = s.worker();
    let mut b = s.worker();
    s.wait_for("the long job", Duration::from_secs(60), |s| {
        !s.manifests().is_empty()
    });
    assert!(
        t.elapsed() >= Duration::from_secs(12),
        "the job really was long: {:?}",
        t.elapsed()
    );
    s.wait_for("queue drained", Duration::from_secs(10), |s| {
        s.queue().depth().expect("depth") == (0, 0)
    });
    // Give the other worker a chance to (wrongly) pick it up again before stopping.
    std::thread::sleep(Duration::from_secs(2));
    s.stop_all(&mut [&mut a, &mut b], Duration::from_secs(20));
    let manifests = s.manifests();
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0]["status"], "succeeded", "{}", manifests[0]);
    assert_eq!(manifests[0]["metadata"]["slow"]["slept_ms"], 13000);
    let logs = s.logs();
    assert_eq!(
        logs.matches("job recorded").count(),
        1,
        "processed by exactly one worker:\n{logs}"
    );
    assert!(
        !logs.contains("already processed") && !logs.contains("another worker recorded"),
        "never redelivered:\n{logs}"
    );
}

#[test]
fn submit_refuses_when_the_worker_is_configured_for_sqs() {
    let s = Setup::new("queue_url = \"https://sqs.example.invalid/1/jobs\"");
    let file = s.image("x.png", 1);
    let out = s
        .cmd(&["submit", &file.display().to_string()])
        .output()
        .expect("submit");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("submit is for local mode") && err.contains("upload to the source bucket"),
        "{err}"
    );
    assert!(
        !s.data().join("queue.db").exists(),
        "nothing was enqueued locally"
    );
}

#[test]
fn an_explicit_job_with_several_images_makes_one_slideshow_once() {
    let s = Setup::with("", crate::video::SLIDESHOW_PROFILE);
    let uploads = s.data().join("buckets/uploads/shows");
    std::fs::create_dir_all(&uploads).expect("bucket dir");
    for (i, name) in ["a.png", "b c.png", "d.png"].iter().enumerate() {
        let src = s.image(name, i as u32 * 3);
        std::fs::copy(&src, uploads.join(name)).expect("upload");
    }
    let job = r#"{"version":1,"sources":["s3://uploads/shows/a.png","s3://uploads/shows/b c.png","s3://uploads/shows/d.png"],"profile":"show"}"#;
    let q = s.queue();
    q.send(job).expect("enqueue");
    q.send(job).expect("enqueue a duplicate");
    let mut w = s.worker();
    s.wait_for("both messages settled", Duration::from_secs(120), |s| {
        s.queue().depth().expect("depth") == (0, 0)
    });
    signal(&w, libc::SIGTERM);
    assert_eq!(s.wait_exit(&mut w, Duration::from_secs(10)), 0);
    let manifests = s.manifests();
    assert_eq!(
        manifests.len(),
        1,
        "one slideshow for two deliveries: {manifests:?}"
    );
    let m = &manifests[0];
    assert_eq!(m["status"], "succeeded", "{m}");
    assert_eq!(m["sources"].as_array().map(Vec::len), Some(3), "{m}");
    assert_eq!(m["sources"][1]["uri"], "s3://uploads/shows/b c.png");
    let mp4 = m["outputs"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["name"] == "slideshow"))
        .and_then(|o| o["uri"].as_str())
        .expect("slideshow output")
        .trim_start_matches("file://")
        .to_string();
    assert!(mp4.contains("/show/shows/a.png/slideshow-"), "{mp4}");
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=width,height,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(&mp4)
        .output()
        .expect("ffprobe");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "640,360,150");
}
