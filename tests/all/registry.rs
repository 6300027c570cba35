//! The plugin registry end to end, against a filesystem registry (the local-mode default, the
//! output bucket's `plugins/`) and an S3 one (moto), with real `mediaflow worker` processes
//! polling every second and `mediaflow plugin publish|channel|list` as an author runs them:
//! a published version is used by a running worker within one poll, with no restart (proved
//! by the job manifests' plugin version and digest); channel pinning, promotion and rollback;
//! versions are immutable; bad plugins (no mediaflow world, wrong world, too large, tampered)
//! are refused at publish and at load, never half-loaded and not fetched again; an
//! unreachable registry keeps the loaded plugins; deleting a plugin (and publishing its next
//! version) while jobs run breaks none of them. Prints the publish → in-use times.

use crate::harness::{Workers, config_text, signal};
use aws_sdk_s3::primitives::ByteStream;
use mediaflow::plugin::bundled;
use mediaflow::storage::{FsStorage, S3Storage, Storage};
use mediaflow_tests::{CANON, Moto, exif_block, jpeg_with_exif, photo_like, programs};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// Seconds between the workers' registry polls.
const POLL_SECS: u64 = 1;
/// Longest wait for anything a poll brings.
const WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
enum Backend {
    /// The default registry of local mode: `data/buckets/renditions/plugins/`.
    Fs,
    /// `s3://registry/plugins/` on moto.
    S3,
}

/// The registry as the test sees it, bypassing `mediaflow` (to tamper, to delete).
enum Raw {
    Fs(PathBuf),
    S3 {
        rt: tokio::runtime::Runtime,
        s3: aws_sdk_s3::Client,
        _moto: Moto,
    },
}

const BUCKET: &str = "registry";
const PREFIX: &str = "plugins/";

struct Setup {
    workers: Workers,
    raw: Raw,
}

impl std::ops::Deref for Setup {
    type Target = Workers;
    fn deref(&self) -> &Workers {
        &self.workers
    }
}

/// Profiles: `semver` (`exif@^1`, the default), `pinned` (`exif@stable`, keys `pinned-*`),
/// `tagged` (`tagger@^1`, keys `tagged-*`), `liar` (`liar@^1`, keys `liar-*`), `slow`
/// (`slow@^1` busy for 4 s, keys `slow-*`).
const PROFILES: &str = r#"
[profiles.semver]
renditions = [{ name = "s", width = 32, format = "png" }]
metadata = [{ plugin = "exif@^1" }]
[profiles.pinned]
renditions = [{ name = "s", width = 32, format = "png" }]
metadata = [{ plugin = "exif@stable" }]
[profiles.tagged]
renditions = [{ name = "s", width = 32, format = "png" }]
metadata = [{ plugin = "tagger@^1" }]
[profiles.liar]
renditions = [{ name = "s", width = 32, format = "png" }]
metadata = [{ plugin = "liar@^1" }]
[profiles.slow]
renditions = [{ name = "s", width = 32, format = "png" }]
metadata = [{ plugin = "slow@^1", config = { millis = 4000 } }]
[[routes]]
key = "pinned-*"
profile = "pinned"
[[routes]]
key = "tagged-*"
profile = "tagged"
[[routes]]
key = "liar-*"
profile = "liar"
[[routes]]
key = "slow-*"
profile = "slow"
"#;

impl Setup {
    fn new(backend: Backend) -> Setup {
        let (raw, env, registry, worker_extra) = match backend {
            Backend::Fs => (Raw::Fs(PathBuf::new()), Vec::new(), String::new(), ""),
            Backend::S3 => {
                let moto = Moto::start();
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("runtime");
                let (s3, _) = rt.block_on(moto.clients());
                rt.block_on(s3.create_bucket().bucket(BUCKET).send())
                    .expect("bucket");
                let env = moto
                    .env()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                (
                    Raw::S3 {
                        rt,
                        s3,
                        _moto: moto,
                    },
                    env,
                    format!("registry = \"s3://{BUCKET}/{PREFIX}\"\n"),
                    "s3_path_style = true",
                )
            }
        };
        let workers = Workers::new(
            |dir| {
                let text = config_text(
                    &dir.join("data"),
                    worker_extra,
                    &format!("[plugins]\n{registry}registry_poll_secs = {POLL_SECS}\n{PROFILES}"),
                );
                text.replace(
                    "default_profile = \"small\"",
                    "default_profile = \"semver\"",
                )
            },
            env,
        );
        let raw = match raw {
            Raw::Fs(_) => Raw::Fs(workers.dir.path().join("data/buckets/renditions/plugins")),
            s3 => s3,
        };
        Setup { workers, raw }
    }

    fn storage(&self) -> (Box<dyn Storage>, &'static str) {
        match &self.raw {
            Raw::Fs(dir) => (Box::new(FsStorage::new(dir).expect("fs")), ""),
            Raw::S3 { rt, s3, .. } => (
                Box::new(S3Storage::new(s3.clone(), BUCKET, rt.handle().clone())),
                PREFIX,
            ),
        }
    }

    /// Every key in the registry, relative to its root.
    fn keys(&self) -> Vec<String> {
        let (s, prefix) = self.storage();
        s.list(prefix)
            .expect("list registry")
            .into_iter()
            .map(|(k, _)| k[prefix.len()..].to_string())
            .collect()
    }

    /// Write an object straight into the registry.
    fn put_raw(&self, key: &str, data: &[u8]) {
        match &self.raw {
            Raw::Fs(_) => {
                let (s, _) = self.storage();
                s.put(key, data, "application/octet-stream").expect("put");
            }
            Raw::S3 { rt, s3, .. } => {
                rt.block_on(
                    s3.put_object()
                        .bucket(BUCKET)
                        .key(format!("{PREFIX}{key}"))
                        .body(ByteStream::from(data.to_vec()))
                        .send(),
                )
                .expect("put");
            }
        }
    }

    fn get_raw(&self, key: &str) -> Vec<u8> {
        let (s, prefix) = self.storage();
        s.get(&format!("{prefix}{key}")).expect("get")
    }

    /// Delete a whole version (or any key prefix) straight from the registry.
    fn delete_raw(&self, prefix_key: &str) {
        for key in self
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(prefix_key))
        {
            match &self.raw {
                Raw::Fs(dir) => std::fs::remove_file(dir.join(&key)).expect("remove"),
                Raw::S3 { rt, s3, .. } => {
                    rt.block_on(
                        s3.delete_object()
                            .bucket(BUCKET)
                            .key(format!("{PREFIX}{key}"))
                            .send(),
                    )
                    .expect("delete");
                }
            }
        }
    }

    /// `mediaflow ARGS --config …` with the registry's environment.
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("mediaflow")
    }

    /// Write `wasm` (and `toml`, if any) to files and `plugin publish` them with `args`.
    fn publish(&self, wasm: &[u8], toml: Option<&str>, args: &[&str]) -> Output {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = self.dir.path().join(format!("pub-{n}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("candidate.wasm");
        std::fs::write(&file, wasm).expect("wasm");
        let mut argv = vec!["plugin", "publish", file.to_str().expect("utf-8")];
        let manifest = dir.join("manifest.toml");
        if let Some(t) = toml {
            std::fs::write(&manifest, t).expect("toml");
            argv.extend(["--manifest", manifest.to_str().expect("utf-8")]);
        }
        argv.extend(args);
        self.run(&argv)
    }

    /// Publish and assert it worked; returns how long the command took.
    fn publish_ok(&self, wasm: &[u8], toml: Option<&str>, args: &[&str]) -> Duration {
        let t = Instant::now();
        let out = self.publish(wasm, toml, args);
        let took = t.elapsed();
        assert!(out.status.success(), "publish {args:?}: {}", text(&out));
        took
    }

    fn worker(&self) -> Child {
        let w = self.spawn();
        self.wait_log("worker started");
        w
    }

    fn wait_log(&self, needle: &str) {
        self.wait_log_n(needle, 1);
    }

    /// Wait until `needle` has been logged `n` times.
    fn wait_log_n(&self, needle: &str, n: usize) {
        self.wait_until(
            &format!("log line {needle:?} ×{n}"),
            WAIT,
            Duration::from_millis(20),
            || self.logs().matches(needle).count() >= n,
        );
    }

    /// Wait for `needle` in the logs; how long after `since` it was seen.
    fn time_until_log(&self, needle: &str, since: Instant) -> Duration {
        self.wait_log(needle);
        since.elapsed()
    }

    /// Submit a JPEG with GPS EXIF as `key`.
    fn submit(&self, key: &str) {
        let file = self.dir.path().join(key);
        std::fs::write(
            &file,
            jpeg_with_exif(&photo_like(40, 30), &exif_block(&CANON)),
        )
        .expect("write source");
        let out = self.run(&["submit", file.to_str().expect("utf-8")]);
        assert!(out.status.success(), "submit: {}", text(&out));
    }

    /// Submit a JPEG with GPS EXIF as `key`; its manifest when the job is recorded.
    fn job(&self, key: &str) -> serde_json::Value {
        self.submit(key);
        let mut found = None;
        self.wait_until(
            &format!("the manifest of {key}"),
            WAIT,
            Duration::from_millis(25),
            || {
                found = self.manifest_of(key);
                found.is_some()
            },
        );
        found.expect("manifest")
    }

    /// Submit `key` for a profile whose plugin is not loaded: the job is not recorded as
    /// failed but retried (a registry is watched: publishing the plugin would let it run), the
    /// log saying which plugin and what is loaded instead.
    fn waits_for_plugin(&self, key: &str, plugin: &str) {
        let needle = format!("plugin {plugin} is not available");
        let retried = || {
            self.logs()
                .lines()
                .filter(|l| l.contains(&needle) && l.contains("will be retried"))
                .count()
        };
        let before = retried();
        self.submit(key);
        self.wait_until(
            &format!("{key} retried for want of {plugin}"),
            WAIT,
            Duration::from_millis(25),
            || retried() > before,
        );
        assert!(
            self.manifest_of(key).is_none(),
            "{key}: not recorded as failed"
        );
    }

    fn manifest_of(&self, key: &str) -> Option<serde_json::Value> {
        self.manifests()
            .into_iter()
            .find(|m| m["source"]["uri"] == format!("s3://uploads/{key}"))
    }

    fn manifests(&self) -> Vec<serde_json::Value> {
        crate::harness::manifests_under(&self.dir.path().join("data/buckets/renditions"))
    }

    fn stop(&self, mut w: Child) {
        signal(&w, libc::SIGTERM);
        assert_eq!(self.wait_exit(&mut w, Duration::from_secs(20)), 0);
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn digest(wasm: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(wasm)))
}

/// `wasm` with a custom section appended: the same behaviour, other bytes (another digest).
fn with_note(wasm: &[u8], note: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"mediaflow-test-note";
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(note.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0); // custom section
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

fn exif_wasm() -> &'static [u8] {
    bundled::get("exif").expect("bundled exif").wasm
}

/// The one plugin record of a manifest: (name, version, digest).
fn plugin_of(m: &serde_json::Value) -> (String, String, String) {
    assert_eq!(m["status"], "succeeded", "{m}");
    let p = &m["plugins"][0];
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    (s(&p["name"]), s(&p["version"]), s(&p["digest"]))
}

fn has_gps(m: &serde_json::Value) -> bool {
    m["metadata"]["exif"].get("gps.position").is_some()
}

/// Publish → in use without a restart; semver picks the highest; a channel pins; promote and
/// roll back by rewriting the channel file; versions are immutable; `plugin list` agrees.
fn publish_pin_and_roll_back(backend: Backend) {
    let s = Setup::new(backend);
    let w = s.worker();
    let m = s.job("semver-0.jpg");
    assert_eq!(
        plugin_of(&m),
        ("exif".into(), "1.0.0".into(), digest(exif_wasm())),
        "before any publish: the bundled exif"
    );
    assert!(!has_gps(&m), "bundled exif strips GPS: {m}");

    // exif 1.1.0: other bytes, GPS kept by its default config; on channel `stable`.
    let v110 = with_note(exif_wasm(), "1.1.0");
    let keep = "world = \"metadata-extractor\"\ndescription = \"EXIF, GPS kept\"\n[config]\ngps = \"keep\"\n";
    let publish_took = s.publish_ok(
        &v110,
        Some(keep),
        &[
            "--name",
            "exif",
            "--version",
            "1.1.0",
            "--channel",
            "stable",
        ],
    );
    let published = Instant::now();
    let in_use = s.time_until_log("registry: exif@1.1.0 added", published);
    // Published under a bundled plugin's name: the worker says what that does to profiles.
    s.wait_log(
        "registry: exif@1.1.0 shadows the bundled exif@1.0.0: profiles asking for `exif@^1`",
    );
    s.wait_log("registry: channel exif/stable -> 1.1.0");
    for key in ["semver-1.jpg", "pinned-1.jpg"] {
        let m = s.job(key);
        assert_eq!(
            plugin_of(&m),
            ("exif".into(), "1.1.0".into(), digest(&v110)),
            "{key}"
        );
        assert!(has_gps(&m), "1.1.0's default config keeps GPS: {m}");
    }

    // exif 1.2.0, GPS stripped, on no channel: semver takes it, the pinned profile does not.
    let v120 = with_note(exif_wasm(), "1.2.0");
    let strip = "world = \"metadata-extractor\"\n[config]\ngps = \"strip\"\n";
    s.publish_ok(
        &v120,
        Some(strip),
        &["--name", "exif", "--version", "1.2.0"],
    );
    s.wait_log("registry: exif@1.2.0 added");
    let m = s.job("semver-2.jpg");
    assert_eq!(plugin_of(&m).1, "1.2.0");
    assert!(!has_gps(&m));
    let m = s.job("pinned-2.jpg");
    assert_eq!(
        plugin_of(&m),
        ("exif".into(), "1.1.0".into(), digest(&v110))
    );

    // Promote, then roll back: each within one poll.
    let out = s.run(&["plugin", "channel", "exif", "stable", "1.2.0"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("exif/stable -> 1.2.0 (was 1.1.0)"),
        "{}",
        text(&out)
    );
    s.wait_log("registry: channel exif/stable -> 1.2.0 (was 1.1.0)");
    assert_eq!(plugin_of(&s.job("pinned-3.jpg")).1, "1.2.0");
    let t = Instant::now();
    let out = s.run(&["plugin", "channel", "exif", "stable", "1.1.0"]);
    assert!(out.status.success(), "{}", text(&out));
    let rolled_back = s.time_until_log("registry: channel exif/stable -> 1.1.0 (was 1.2.0)", t);
    let m = s.job("pinned-4.jpg");
    assert_eq!(
        plugin_of(&m),
        ("exif".into(), "1.1.0".into(), digest(&v110))
    );
    assert!(has_gps(&m));
    // A channel may name a version that does not exist only by hand; the CLI refuses.
    let out = s.run(&["plugin", "channel", "exif", "stable", "9.9.9"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("exif@9.9.9 is neither in the registry nor bundled"));

    // Versions are immutable: other bytes or another plugin.toml refused, the same a no-op.
    let before = s.get_raw("exif/1.2.0/plugin.wasm");
    let out = s.publish(
        &v110,
        Some(strip),
        &["--name", "exif", "--version", "1.2.0"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("exif@1.2.0 is already published with other bytes"),
        "{}",
        text(&out)
    );
    assert_eq!(
        s.get_raw("exif/1.2.0/plugin.wasm"),
        before,
        "the refused publish changed nothing"
    );
    let out = s.publish(&v120, Some(keep), &["--name", "exif", "--version", "1.2.0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("already published with the same wasm but another plugin.toml"),
        "a version's default config is part of it: {}",
        text(&out)
    );
    let out = s.publish(
        &v120,
        Some(strip),
        &["--name", "exif", "--version", "1.2.0"],
    );
    assert!(
        text(&out).contains("already published with these bytes"),
        "{}",
        text(&out)
    );
    // The bundled version cannot be shadowed.
    let out = s.publish(exif_wasm(), None, &["--name", "exif", "--version", "1.0.0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is bundled with this engine"),
        "{}",
        text(&out)
    );

    let out = s.run(&["plugin", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    for line in [
        format!(
            "exif             1.1.0        metadata-extractor   registry  {}",
            digest(&v110)
        ),
        format!(
            "exif             1.2.0        metadata-extractor   registry  {}",
            digest(&v120)
        ),
        format!(
            "exif             1.0.0        metadata-extractor   bundled   {}",
            digest(exif_wasm())
        ),
        "exif/stable -> 1.1.0".to_string(),
    ] {
        assert!(listing.contains(&line), "{line:?} in:\n{listing}");
    }
    assert!(
        listing
            .lines()
            .any(|l| l.contains("semver") && l.ends_with("-> exif@1.2.0 (registry)")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.contains("pinned") && l.ends_with("-> exif@1.1.0 (registry)")),
        "{listing}"
    );
    s.stop(w);
    assert!(
        in_use < Duration::from_secs(POLL_SECS) + Duration::from_millis(1500)
            && rolled_back < Duration::from_secs(POLL_SECS) + Duration::from_millis(1500),
        "in use within one poll interval ({POLL_SECS} s) plus loading: publish → in use {in_use:?}, rollback {rolled_back:?}"
    );
    // The poll that found 1.1.0: listing, fetching, verifying, compiling (or the cache).
    let sync_ms = s
        .logs()
        .lines()
        .find(|l| l.contains("registry: exif@1.1.0 added"))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["sync_ms"].as_f64())
        .unwrap_or(f64::NAN);
    println!(
        "registry ({backend:?}): `plugin publish` took {:.0} ms; publish → in use {:.0} ms (the poll itself {sync_ms:.0} ms); rollback → in use {:.0} ms (poll every {POLL_SECS} s)",
        publish_took.as_secs_f64() * 1e3,
        in_use.as_secs_f64() * 1e3,
        rolled_back.as_secs_f64() * 1e3
    );
}

#[test]
fn fs_publish_is_used_within_one_poll_and_channels_pin_and_roll_back() {
    publish_pin_and_roll_back(Backend::Fs);
}

#[test]
fn s3_publish_is_used_within_one_poll_and_channels_pin_and_roll_back() {
    publish_pin_and_roll_back(Backend::S3);
}

/// Bad plugins: refused by `publish` before anything is uploaded; refused by the engine at
/// load (tampered wasm, a plugin.toml lying about the world), never half-loaded, not fetched
/// again while unchanged; the worker keeps serving and takes the plugin back once repaired.
fn bad_plugins_are_refused(backend: Backend) {
    let mut s = Setup::new(backend);
    let watermark = bundled::get("watermark").expect("watermark").wasm;
    // At publish: not a mediaflow plugin; another world than its plugin.toml says; too large.
    let wrong = std::fs::read(programs::WRONG_WORLD).expect("wrong-world guest");
    let out = s.publish(&wrong, None, &["--name", "wrong", "--version", "1.0.0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("implements no known mediaflow world"),
        "{}",
        text(&out)
    );
    let out = s.publish(
        watermark,
        Some("world = \"metadata-extractor\"\n"),
        &["--name", "liar", "--version", "1.0.0"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is a watermarker plugin, not a metadata-extractor"),
        "{}",
        text(&out)
    );
    let big = s.dir.path().join("big.wasm");
    std::fs::write(&big, exif_wasm()).expect("write");
    let out = s
        .cmd(&[
            "plugin",
            "publish",
            big.to_str().expect("utf-8"),
            "--name",
            "big",
            "--version",
            "1.0.0",
        ])
        .env("MEDIAFLOW_PLUGINS__MAX_WASM_BYTES", "1000")
        .output()
        .expect("publish");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("over the 1000-byte cap"),
        "{}",
        text(&out)
    );
    assert!(s.keys().is_empty(), "nothing uploaded: {:?}", s.keys());

    // tagger 1.0.0, published properly, and a liar written by hand (digest right, world wrong).
    let tagger = with_note(exif_wasm(), "tagger");
    s.publish_ok(
        &tagger,
        Some("world = \"metadata-extractor\"\n"),
        &["--name", "tagger", "--version", "1.0.0"],
    );
    s.put_raw("liar/1.0.0/plugin.wasm", watermark);
    s.put_raw(
        "liar/1.0.0/plugin.toml",
        format!(
            "name = \"liar\"\nversion = \"1.0.0\"\nworld = \"metadata-extractor\"\nsha256 = \"{}\"\n",
            digest(watermark)
        )
        .as_bytes(),
    );
    let w = s.worker();
    s.wait_log("registry: liar@1.0.0 refused: is a watermarker plugin, not a metadata-extractor");
    assert_eq!(plugin_of(&s.job("tagged-1.jpg")).0, "tagger");
    // Never half-loaded: its jobs wait for a good version.
    s.waits_for_plugin("liar-1.jpg", "liar@^1");

    // Tamper with tagger's wasm (one byte flipped): refused, removed, and new jobs don't get it.
    let mut tampered = tagger.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    s.put_raw("tagger/1.0.0/plugin.wasm", &tampered);
    s.wait_log("registry: tagger@1.0.0 refused: digest mismatch: plugin.toml says");
    s.wait_log("registry: tagger@1.0.0 removed");
    s.waits_for_plugin("tagged-2.jpg", "tagger@^1");
    // Two more changes, so at least two more polls: the refused objects were not fetched again
    // (each fetch would log the refusal again).
    let other = with_note(exif_wasm(), "other");
    s.publish_ok(&other, None, &["--name", "other", "--version", "1.0.0"]);
    s.wait_log("registry: other@1.0.0 added");
    let out = s.run(&["plugin", "channel", "other", "stable", "1.0.0"]);
    assert!(out.status.success(), "{}", text(&out));
    s.wait_log("registry: channel other/stable -> 1.0.0");
    let logs = s.logs();
    assert_eq!(
        logs.matches("registry: tagger@1.0.0 refused").count(),
        1,
        "{logs}"
    );
    assert_eq!(
        logs.matches("registry: liar@1.0.0 refused").count(),
        1,
        "{logs}"
    );
    let out = s.run(&["plugin", "list"]);
    assert!(
        text(&out).contains("REFUSED (digest_mismatch)")
            && text(&out).contains("REFUSED (wrong_world)"),
        "{}",
        text(&out)
    );

    // Repaired: the original bytes back, and it is in use again.
    s.put_raw("tagger/1.0.0/plugin.wasm", &tagger);
    s.wait_log_n("registry: tagger@1.0.0 added", 2);
    assert_eq!(
        plugin_of(&s.job("tagged-3.jpg")),
        ("tagger".into(), "1.0.0".into(), digest(&tagger))
    );
    if let Raw::S3 { .. } = s.raw {
        // The registry becomes unreachable (moto stops): not an empty registry — the plugins
        // stay loaded and jobs keep using them.
        drop(std::mem::replace(&mut s.raw, Raw::Fs(PathBuf::new())));
        s.wait_log("keeping the plugins loaded");
        assert_eq!(
            plugin_of(&s.job("tagged-4.jpg")),
            ("tagger".into(), "1.0.0".into(), digest(&tagger))
        );
        assert_eq!(
            s.logs().matches("registry: tagger@1.0.0 removed").count(),
            1
        );
    }
    s.stop(w);
}

#[test]
fn fs_bad_plugins_are_refused_at_publish_and_at_load() {
    bad_plugins_are_refused(Backend::Fs);
}

#[test]
fn s3_bad_plugins_are_refused_at_publish_and_at_load() {
    bad_plugins_are_refused(Backend::S3);
}

/// Delete a plugin from the registry and publish its next version while three jobs use it:
/// all three finish with the version they started with; the next job gets the new one; once
/// every version is deleted new jobs fail clearly and the worker carries on.
fn deleting_a_plugin_while_jobs_run(backend: Backend) {
    let s = Setup::new(backend);
    let slow = std::fs::read(programs::SLOW).expect("slow guest");
    let toml =
        "world = \"metadata-extractor\"\n[config]\nmillis = 5\n[limits]\ntimeout_ms = 60000\n";
    s.publish_ok(&slow, Some(toml), &["--name", "slow", "--version", "1.0.0"]);
    let w = s.spawn_with(&[("MEDIAFLOW_WORKER__CONCURRENCY", "3")]);
    s.wait_log("worker started");
    let files: Vec<PathBuf> = (0..3)
        .map(|i| {
            let f = s.dir.path().join(format!("slow-{i}.jpg"));
            std::fs::write(&f, jpeg_with_exif(&photo_like(40, 30), &exif_block(&CANON)))
                .expect("write");
            f
        })
        .collect();
    let mut argv = vec!["submit"];
    argv.extend(files.iter().map(|f| f.to_str().expect("utf-8")));
    let out = s.run(&argv);
    assert!(out.status.success(), "{}", text(&out));
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.rsplit_once("(message ")
                .map(|(_, id)| id.trim_end_matches(')').to_string())
        })
        .collect();
    assert_eq!(ids.len(), 3, "{}", text(&out));
    let queue = mediaflow::queue::local::LocalQueue::open(&s.dir.path().join("data/queue.db"), 5)
        .expect("queue");
    s.wait_until(
        "all three jobs received",
        WAIT,
        Duration::from_millis(20),
        || {
            ids.iter()
                .all(|id| queue.receive_count(id).ok().flatten() == Some(1))
        },
    );
    // While they run: 1.0.0 deleted, 1.1.0 (other bytes) published in its place.
    s.delete_raw("slow/1.0.0/");
    assert!(
        s.keys().iter().all(|k| !k.starts_with("slow/1.0.0/")),
        "{:?}",
        s.keys()
    );
    let slow11 = with_note(&slow, "1.1.0");
    s.publish_ok(
        &slow11,
        Some(toml),
        &["--name", "slow", "--version", "1.1.0"],
    );
    s.wait_log("registry: slow@1.0.0 removed (deleted from the registry)");
    s.wait_log("registry: slow@1.1.0 added");
    assert!(
        s.manifests().is_empty(),
        "the swap happened while all three jobs still ran"
    );
    s.wait_until("three manifests", WAIT, Duration::from_millis(50), || {
        s.manifests().len() == 3
    });
    for m in s.manifests() {
        assert_eq!(
            plugin_of(&m),
            ("slow".into(), "1.0.0".into(), digest(&slow)),
            "a job keeps the version it started with: {m}"
        );
        assert_eq!(m["metadata"]["slow"]["slept_ms"], 4000, "{m}");
    }
    assert_eq!(
        plugin_of(&s.job("slow-3.jpg")),
        ("slow".into(), "1.1.0".into(), digest(&slow11)),
        "the next job gets the new version"
    );
    // Deleted with nothing in its place: new jobs wait for it, saying so; the worker carries on.
    s.delete_raw("slow/");
    s.wait_log("registry: slow@1.1.0 removed (deleted from the registry)");
    s.waits_for_plugin("slow-after.jpg", "slow@^1");
    assert_eq!(s.job("semver-after.jpg")["status"], "succeeded");
    s.stop(w);
}

#[test]
fn fs_deleting_a_plugin_while_jobs_run_breaks_none_of_them() {
    deleting_a_plugin_while_jobs_run(Backend::Fs);
}

#[test]
fn s3_deleting_a_plugin_while_jobs_run_breaks_none_of_them() {
    deleting_a_plugin_while_jobs_run(Backend::S3);
}

/// The README's path for a plugin author, command by command: `plugin new` → `cargo build` →
/// `plugin validate` → `plugin publish` → a profile names it → the job's manifest records it.
#[test]
fn an_author_goes_from_plugin_new_to_a_published_plugin_in_use() {
    let s = Workers::new(
        |dir| {
            format!(
                "[plugins]\nregistry = \"{}\"\n[profiles.authored]\nrenditions = [{{ name = \"s\", width = 32, format = \"png\" }}]\nmetadata = [{{ plugin = \"author-path@^1\" }}]\n",
                dir.join("registry").display()
            )
        },
        Vec::new(),
    );
    let crate_dir = s.dir.path().join("author-path");
    let check = |args: &[&str], out: Output| {
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // With the engine config (publish, list, process) …
    let run = |args: &[&str]| check(args, s.cmd(args).output().expect("mediaflow"));
    // … and without (new, validate: they read no engine config).
    let bare = |args: &[&str]| {
        let out = crate::cli::command()
            .args(args)
            .output()
            .expect("mediaflow");
        check(args, out)
    };
    let created = bare(&[
        "plugin",
        "new",
        "metadata-extractor",
        "author-path",
        "--dir",
        crate_dir.to_str().expect("utf-8"),
    ]);
    assert!(
        created.contains("mediaflow plugin publish"),
        "the next steps include publishing: {created}"
    );
    // Shares compiled dependencies with the other guest builds (see cli.rs).
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("wasm-scaffold");
    let build = std::process::Command::new(env!("CARGO"))
        .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo build");
    assert!(build.status.success(), "{}", text(&build));
    let wasm = target.join("wasm32-wasip2/release/author_path.wasm");
    let wasm_arg = wasm.to_str().expect("utf-8");
    let manifest = crate_dir.join("plugin.toml");
    let manifest_arg = manifest.to_str().expect("utf-8");
    bare(&["plugin", "validate", wasm_arg, "--manifest", manifest_arg]);
    let published = run(&[
        "plugin",
        "publish",
        wasm_arg,
        "--manifest",
        manifest_arg,
        "--version",
        "1.0.0",
    ]);
    let bytes = std::fs::read(&wasm).expect("wasm");
    assert!(
        published.contains(&format!(
            "published author-path@1.0.0 (metadata-extractor, {} bytes, {})",
            bytes.len(),
            digest(&bytes)
        )),
        "{published}"
    );
    let listing = run(&["plugin", "list"]);
    assert!(
        listing
            .lines()
            .any(|l| l.contains("authored") && l.ends_with("-> author-path@1.0.0 (registry)")),
        "{listing}"
    );
    // Which registry it read, and how that was decided.
    let first = listing.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("registry: /") && first.ends_with("/registry (plugins.registry)"),
        "{listing}"
    );
    let image = s.dir.path().join("photo.jpg");
    std::fs::write(
        &image,
        jpeg_with_exif(&photo_like(40, 30), &exif_block(&CANON)),
    )
    .expect("image");
    let out_dir = s.dir.path().join("out");
    run(&[
        "process",
        image.to_str().expect("utf-8"),
        "--out",
        out_dir.to_str().expect("utf-8"),
        "--profile",
        "authored",
    ]);
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("photo/manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    assert_eq!(
        plugin_of(&m),
        ("author-path".into(), "1.0.0".into(), digest(&bytes))
    );
}
