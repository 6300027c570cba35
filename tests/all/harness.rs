//! Running `mediaflow worker` as real processes, for the local-queue tests (`worker.rs`) and the
//! SQS/S3 tests (`aws.rs`): a temporary directory with the config, workers spawned with their
//! logs in files, polling for a condition with a deadline (never a blind sleep), signals.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A worker configuration in a temporary directory, and the workers started from it.
pub struct Workers {
    /// The directory (config, worker logs, local data).
    pub dir: tempfile::TempDir,
    /// `dir/mediaflow.toml`.
    pub config: PathBuf,
    env: Vec<(String, String)>,
    spawned: AtomicU64,
}

/// The config the worker tests share: a tiny PNG profile `small`, 2 jobs in flight, then
/// `worker_extra` lines in `[worker]` and `extra` after it (more tables).
pub fn config_text(data_dir: &Path, worker_extra: &str, extra: &str) -> String {
    format!(
        r#"
default_profile = "small"
[profiles.small]
renditions = [{{ name = "s", width = 48, format = "png" }}]
[worker]
data_dir = "{}"
concurrency = 2
poll_interval_ms = 50
{worker_extra}
{extra}
"#,
        data_dir.display()
    )
}

impl Workers {
    /// Write `config(dir)` as the config; workers get `env` on top of the test environment.
    pub fn new(config: impl FnOnce(&Path) -> String, env: Vec<(String, String)>) -> Workers {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("mediaflow.toml");
        std::fs::write(&path, config(dir.path())).expect("config");
        Workers {
            dir,
            config: path,
            env,
            spawned: AtomicU64::new(0),
        }
    }

    /// `mediaflow-cli ARGS --config CONFIG` with the environment set.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = crate::cli::command();
        c.args(args)
            .arg("--config")
            .arg(&self.config)
            // Workers run side by side: each takes a free port for its ops listener.
            .env("MEDIAFLOW_OPS__LISTEN", "127.0.0.1:0")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("MEDIAFLOW_LOG", "info");
        c
    }

    /// Start a worker logging to `dir/worker-N.log`.
    pub fn spawn(&self) -> Child {
        self.spawn_with(&[])
    }

    /// Start a worker with extra environment (e.g. `MEDIAFLOW_WORKER__…` overrides).
    pub fn spawn_with(&self, env: &[(&str, &str)]) -> Child {
        self.spawn_args(&["worker"], env)
    }

    /// Start `mediaflow ARGS` (a worker, `serve`) logging to `dir/worker-N.log`.
    pub fn spawn_args(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        let n = self.spawned.fetch_add(1, Ordering::Relaxed);
        let log =
            std::fs::File::create(self.dir.path().join(format!("worker-{n}.log"))).expect("log");
        self.cmd(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn worker")
    }

    /// Every worker's log so far.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for e in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with("worker-") {
                s.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        s
    }

    /// Poll `ok` every `every` until it holds; panics with the logs after `timeout`.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        every: Duration,
        mut ok: impl FnMut() -> bool,
    ) {
        let t = Instant::now();
        while !ok() {
            assert!(
                t.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(every);
        }
    }

    /// A directory with the `guest-slow` test plugin (busy for `millis` by default, config
    /// `millis` per profile) in the registry layout, for `[plugins] local`.
    pub fn slow_plugin(&self, millis: u64) -> PathBuf {
        let dir = self.dir.path().join("slow-plugin");
        std::fs::create_dir_all(&dir).expect("plugin dir");
        std::fs::copy(mediaflow_tests::programs::SLOW, dir.join("plugin.wasm")).expect("copy wasm");
        std::fs::write(
            dir.join("plugin.toml"),
            format!(
                "name = \"slow\"\nversion = \"0.1.0\"\nworld = \"metadata-extractor\"\n[config]\nmillis = {millis}\n[limits]\ntimeout_ms = 60000\n"
            ),
        )
        .expect("plugin.toml");
        dir
    }

    /// Wait for `child` to exit; panics with the logs after `timeout`. The exit code, or -1
    /// if a signal ended it.
    pub fn wait_exit(&self, child: &mut Child, timeout: Duration) -> i32 {
        let t = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(
                t.elapsed() < timeout,
                "worker did not exit within {timeout:?}; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM every worker and assert each exits 0 within `timeout`.
    pub fn stop_all(&self, workers: &mut [&mut Child], timeout: Duration) {
        for w in workers.iter() {
            signal(w, libc::SIGTERM);
        }
        for w in workers.iter_mut() {
            let code = self.wait_exit(w, timeout);
            assert_eq!(code, 0, "SIGTERM exits 0; logs:\n{}", self.logs());
        }
    }

    /// Rewrite the config with `f`.
    pub fn edit_config(&self, f: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        std::fs::write(&self.config, f(text)).expect("write config");
    }
}

/// Send `sig` to a child process.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    #[allow(unsafe_code)]
    let r = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill");
}

/// Every `manifest.json` under `root` (a local bucket's directory), parsed. Manifests are
/// written by rename, so a file that exists is never partial.
pub fn manifests_under(root: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "manifest.json") {
                let text = std::fs::read_to_string(&p).expect("read manifest");
                out.push(serde_json::from_str(&text).expect("manifest JSON"));
            }
        }
    }
    out
}
