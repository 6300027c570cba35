//! Decoders written in C parse hostile bytes in a child process per decode: a crash (a real
//! SIGSEGV) or an endless loop there — injected with the test-only `MF_TEST_DECODER_FAULT`
//! trigger — fails that one job with `decoder_crashed` or `decode_timeout` while the other
//! jobs of the same run finish, and a decode past the memory cap fails cleanly. Under the
//! worker, such a job is retried by the queue and recorded as failed on its last receive.

use crate::harness::{Workers, config_text, manifests_under, signal};
use crate::process::run_measured;
use crate::video::{failed_with, ffmpeg, manifest};
use mediaflow::queue::local::LocalQueue;
use std::time::{Duration, Instant};

#[test]
fn a_decoder_crash_or_hang_costs_one_job_while_the_others_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let clip = |name: &str, codec: &[&str]| {
        let mut a = vec![
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=25:duration=2",
        ];
        a.extend_from_slice(codec);
        let p = d(name);
        a.push(&p);
        ffmpeg(&a);
    };
    clip("good-1.mp4", &["-c:v", "libx264"]);
    clip("a-CRASHME.mp4", &["-c:v", "libx264"]);
    clip("b-HANGME.mkv", &["-c:v", "libx264"]);
    clip(
        "good-2.webm",
        &["-c:v", "libvpx-vp9", "-deadline", "realtime"],
    );
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x480:rate=1",
        "-frames:v",
        "1",
        &d("p.png"),
    ]);
    for name in ["c-CRASHME.avif", "good-3.avif", "d-HANGME.avif"] {
        let o = std::process::Command::new("avifenc")
            .args([&d("p.png"), &d(name)])
            .output()
            .expect("avifenc");
        assert!(o.status.success());
    }
    let files = [
        "good-1.mp4",
        "a-CRASHME.mp4",
        "b-HANGME.mkv",
        "good-2.webm",
        "c-CRASHME.avif",
        "good-3.avif",
        "d-HANGME.avif",
    ];
    let mut args = vec!["process".to_string(), "--jobs".into(), "3".into()];
    args.extend(files.iter().map(|f| d(f)));
    args.extend(["--out".into(), d("out")]);
    let started = Instant::now();
    let (code, log, _) = run_measured(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[
            ("MF_TEST_DECODER_FAULT", "crash:CRASHME,hang:HANGME"),
            ("MEDIAFLOW_LIMITS__DECODE_STALL_SECS", "2"),
        ],
    );
    let took = started.elapsed();
    assert_eq!(
        code, 1,
        "the run itself survives and reports the failures: {log}"
    );
    assert!(took < Duration::from_secs(60), "{took:?}");
    let out = dir.path().join("out");
    for stem in ["good-1", "good-2", "good-3"] {
        let m = manifest(&out, stem);
        assert_eq!(m["status"], "succeeded", "{stem}: {m}");
    }
    for stem in ["a-CRASHME", "c-CRASHME"] {
        let m = manifest(&out, stem);
        assert_eq!(m["error"]["code"], "decoder_crashed", "{stem}: {m}");
        let msg = m["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains("SIGSEGV"), "{stem}: {msg}");
    }
    for stem in ["b-HANGME", "d-HANGME"] {
        let m = manifest(&out, stem);
        assert_eq!(m["error"]["code"], "decode_timeout", "{stem}: {m}");
        let msg = m["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains("decode_stall_secs"), "{stem}: {msg}");
        let ms = m["timings_ms"]["total"].as_f64().unwrap_or(0.0);
        assert!(
            (2000.0..10_000.0).contains(&ms),
            "{stem}: stopped after the 2 s stall: {ms} ms"
        );
    }
}

#[test]
fn a_decode_over_the_memory_cap_fails_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=3840x2160:rate=25:duration=0.2",
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=error",
        &d("uhd.mp4"),
    ]);
    let (code, log, _) = run_measured(
        &["process", &d("uhd.mp4"), "--out", &d("out")],
        &[("MEDIAFLOW_LIMITS__DECODER_MEMORY_BYTES", "100000000")],
    );
    assert_eq!(code, 1, "{log}");
    let m = manifest(&dir.path().join("out"), "uhd");
    failed_with(&m, "limit_exceeded", "limits.decoder_memory_bytes");
}

/// The same faults under `mediaflow worker`: the crashing and the hanging upload are retried
/// by the queue (a machine fault looks the same), then recorded as failed on the last receive
/// — not dead-lettered — while the worker keeps running and finishes the other uploads.
#[test]
fn in_the_worker_a_crashing_or_hanging_decode_is_retried_then_recorded_while_others_finish() {
    let workers = Workers::new(
        |dir| {
            config_text(
                &dir.join("data"),
                "visibility_timeout_secs = 30\nmax_receive_count = 2",
                "[limits]\ndecode_stall_secs = 2",
            )
        },
        vec![(
            "MF_TEST_DECODER_FAULT".into(),
            "crash:CRASHME,hang:HANGME".into(),
        )],
    );
    let d = |n: &str| workers.dir.path().join(n);
    let clip = |name: &str| {
        let p = d(name);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=25:duration=1",
            "-c:v",
            "libx264",
            &p.to_string_lossy(),
        ]);
        p
    };
    let files = [
        clip("a-CRASHME.mp4"),
        clip("b-HANGME.mkv"),
        clip("good.mp4"),
    ];
    let mut args = vec!["submit".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = workers.cmd(&argv).output().expect("submit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut w = workers.spawn();
    let manifests = || manifests_under(&workers.dir.path().join("data/buckets/renditions"));
    let by_name = |name: &str| {
        manifests()
            .into_iter()
            .find(|m| m["source"]["uri"].as_str().unwrap_or("").contains(name))
    };
    workers.wait_until(
        "three manifests",
        Duration::from_secs(90),
        Duration::from_millis(100),
        || manifests().len() == 3,
    );
    assert!(
        w.try_wait().expect("wait").is_none(),
        "the worker is still running"
    );
    let good = by_name("good.mp4").expect("good");
    assert_eq!(good["status"], "succeeded", "{good}");
    for (name, code) in [
        ("a-CRASHME", "decoder_crashed"),
        ("b-HANGME", "decode_timeout"),
    ] {
        let m = by_name(name).expect(name);
        assert_eq!(m["status"], "failed", "{m}");
        assert_eq!(m["error"]["code"], code, "{m}");
    }
    let logs = workers.logs();
    for fault in ["decoder crashed", "decode timed out"] {
        assert!(
            logs.matches(fault).count() >= 2,
            "tried on each of the two receives ({fault}): {logs}"
        );
    }
    // Deletes go out in batches: wait for the last one.
    let queue = LocalQueue::open(&workers.dir.path().join("data/queue.db"), 2).expect("queue");
    workers.wait_until(
        "every message acknowledged, none dead-lettered",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || queue.depth().expect("depth") == (0, 0),
    );
    signal(&w, libc::SIGTERM);
    assert_eq!(workers.wait_exit(&mut w, Duration::from_secs(15)), 0);
}
