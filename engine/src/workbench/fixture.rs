//! `plugin test`: a plugin checked against its fixtures. A fixture is a TOML file in the
//! plugin's `fixtures/` directory naming an input file (beside it) and what the plugin should
//! return for it, run as [`super::Bench::run`] runs a file (a real job, the real sandbox):
//!
//! ```toml
//! input = "sample.png"                      # the media file, relative to this fixture
//! event = "failed"                          # a rule's event (default: the input's own job)
//! [config]                                  # plugin configuration over plugin.toml's
//! prefix = "file"
//! [expect]
//! entries = { "file.magic" = "89504e47" }   # metadata: these keys with these values
//! keys = ["file.bytes"]                     # these keys, any value
//! absent = ["gps.latitude"]                 # not these
//! count = 2                                 # exactly this many entries
//! error = "unsupported"                     # the job's error or notes contain this instead
//! overlay = { present = true, inside = true, tiled = false, max_width_fraction = 0.5 }
//! notifications = [{ sink = "alerts", subject_contains = "failed", body_contains = "" }]
//! ```

use super::{Bench, Trial, WorkbenchError, event_named};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One fixture file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    input: PathBuf,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
    #[serde(default)]
    expect: Expect,
}

/// What the plugin should return.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    entries: BTreeMap<String, toml::Value>,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    absent: Vec<String>,
    count: Option<usize>,
    error: Option<String>,
    overlay: Option<OverlayExpect>,
    notifications: Option<Vec<NotificationExpect>>,
}

/// What each overlay (one per rendition size) should be.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverlayExpect {
    present: Option<bool>,
    inside: Option<bool>,
    tiled: Option<bool>,
    max_width_fraction: Option<f64>,
    max_height_fraction: Option<f64>,
    min_opacity: Option<f32>,
    max_opacity: Option<f32>,
}

/// One notification, in order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationExpect {
    sink: Option<String>,
    subject_contains: Option<String>,
    body_contains: Option<String>,
}

/// A fixture's result.
#[derive(Debug)]
pub struct Outcome {
    /// The fixture's name (its file stem).
    pub name: String,
    /// What did not match (empty: it passed).
    pub failures: Vec<String>,
    /// The plugin's time in the job, in milliseconds.
    pub plugin_ms: Option<f64>,
}

/// Every fixture's result.
#[derive(Debug)]
pub struct Report {
    /// `name@version` of the plugin.
    pub plugin: String,
    /// The fixtures' directory.
    pub dir: PathBuf,
    /// In name order.
    pub outcomes: Vec<Outcome>,
}

impl Report {
    /// Whether every fixture passed.
    pub fn passed(&self) -> bool {
        self.failed() == 0
    }

    /// How many failed.
    pub fn failed(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| !o.failures.is_empty())
            .count()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {} fixture(s) in {}",
            self.plugin,
            self.len(),
            self.dir.display()
        )?;
        for o in &self.outcomes {
            let ms = o
                .plugin_ms
                .map(|ms| format!(" ({ms:.1} ms)"))
                .unwrap_or_default();
            if o.failures.is_empty() {
                writeln!(f, "  ok    {}{ms}", o.name)?;
            } else {
                writeln!(f, "  FAIL  {}{ms}", o.name)?;
                for why in &o.failures {
                    writeln!(f, "          {why}")?;
                }
            }
        }
        writeln!(
            f,
            "{} passed, {} failed",
            self.len() - self.failed(),
            self.failed()
        )
    }
}

/// Run the plugin at `plugin` against the fixtures in `fixtures` (default: its `fixtures/`),
/// the jobs writing under `out` (default: a temporary directory).
pub fn test(
    plugin: &Path,
    fixtures: Option<&Path>,
    out: Option<&Path>,
) -> Result<Report, WorkbenchError> {
    let dir = match fixtures {
        Some(d) => d.to_path_buf(),
        None if plugin.is_file() => plugin.with_file_name("fixtures"),
        None => plugin.join("fixtures"),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| {
            WorkbenchError::Input(format!(
                "{}: {e} (fixtures are `NAME.toml` files there: see `mediaflow plugin new`, \
                 which writes one)",
                dir.display()
            ))
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(WorkbenchError::Input(format!(
            "{}: no fixtures (`NAME.toml` files naming an input and what to expect)",
            dir.display()
        )));
    }
    let tmp;
    let out = match out {
        Some(o) => o.to_path_buf(),
        None => {
            tmp = tempfile::tempdir().map_err(|e| WorkbenchError::Input(e.to_string()))?;
            tmp.path().to_path_buf()
        }
    };
    let mut label = String::new();
    let mut outcomes = Vec::new();
    for file in &files {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fixture = read(file)?;
        let config = fixture
            .config
            .iter()
            .map(|(k, v)| (k.clone(), plain(v)))
            .collect();
        let bench = Bench::open(plugin, config)?;
        label = format!("{}@{}", bench.plugin().name(), bench.plugin().version());
        let event = fixture.event.as_deref().map(event_named).transpose()?;
        let input = file.with_file_name(&fixture.input);
        let trial = bench
            .run(&[input], &out.join(&name), event.as_ref())?
            .pop()
            .ok_or_else(|| WorkbenchError::Input(format!("{name}: no result")))?;
        outcomes.push(Outcome {
            name,
            failures: check(&fixture.expect, &trial),
            plugin_ms: trial.plugin_ms,
        });
    }
    Ok(Report {
        plugin: label,
        dir,
        outcomes,
    })
}

fn read(file: &Path) -> Result<Fixture, WorkbenchError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| WorkbenchError::Input(format!("{}: {e}", file.display())))?;
    toml::from_str(&text).map_err(|e| {
        WorkbenchError::Input(format!(
            "{}: {}",
            file.display(),
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        ))
    })
}

/// A TOML value as a plugin configuration string.
fn plain(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What in `trial` does not match `expect`.
fn check(expect: &Expect, trial: &Trial) -> Vec<String> {
    let mut failures = Vec::new();
    let said = || {
        trial
            .error
            .iter()
            .chain(&trial.notes)
            .cloned()
            .collect::<Vec<_>>()
    };
    match &expect.error {
        Some(text) => {
            if !said().iter().any(|s| s.contains(text.as_str())) {
                failures.push(format!(
                    "expected an error containing {text:?}; the job {} with {}",
                    trial.status,
                    if said().is_empty() {
                        "no error".to_string()
                    } else {
                        said().join("; ")
                    }
                ));
            }
            return failures;
        }
        None => {
            if let Some(e) = &trial.error {
                failures.push(format!("the job failed: {e}"));
            }
        }
    }
    for (key, want) in &expect.entries {
        let want = serde_json::to_value(want).unwrap_or_default();
        match trial.entries.get(key) {
            None => failures.push(format!("entry `{key}`: missing (expected {want})")),
            Some(got) if !same(got, &want) => {
                failures.push(format!("entry `{key}`: expected {want}, got {got}"))
            }
            Some(_) => {}
        }
    }
    for key in &expect.keys {
        if !trial.entries.contains_key(key) {
            failures.push(format!("entry `{key}`: missing"));
        }
    }
    for key in &expect.absent {
        if let Some(got) = trial.entries.get(key) {
            failures.push(format!("entry `{key}`: expected none, got {got}"));
        }
    }
    if let Some(n) = expect.count.filter(|n| *n != trial.entries.len()) {
        failures.push(format!("expected {n} entries, got {}", trial.entries.len()));
    }
    if let Some(o) = &expect.overlay {
        check_overlays(o, trial, &mut failures);
    }
    if let Some(want) = &expect.notifications {
        check_notifications(want, trial, &mut failures);
    }
    failures
}

/// Equal JSON values, numbers compared as numbers (TOML `64` and a float 64.0 match).
fn same(got: &serde_json::Value, want: &serde_json::Value) -> bool {
    match (got.as_f64(), want.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
        _ => got == want,
    }
}

fn check_overlays(o: &OverlayExpect, trial: &Trial, failures: &mut Vec<String>) {
    if trial.overlays.is_empty() {
        failures.push("no rendition was drawn on (the job made no image outputs)".into());
    }
    for d in &trial.overlays {
        let at = format!("{}x{}", d.width, d.height);
        if let Some(e) = &d.error {
            failures.push(format!("{at}: the call failed: {e}"));
            continue;
        }
        let present = d.overlay.is_some();
        if o.present.is_some_and(|p| p != present) {
            failures.push(format!(
                "{at}: expected {}an overlay, got {}",
                if present { "no " } else { "" },
                if present { "one" } else { "none" }
            ));
        }
        let Some(ov) = &d.overlay else { continue };
        let mut expect_flag = |what: &str, want: Option<bool>, got: bool| {
            if want.is_some_and(|w| w != got) {
                failures.push(format!("{at}: expected {what} = {}, got {got}", !got));
            }
        };
        expect_flag("inside", o.inside, ov.inside);
        expect_flag("tiled", o.tiled, ov.tiled);
        let wf = f64::from(ov.width) / f64::from(d.width.max(1));
        let hf = f64::from(ov.height) / f64::from(d.height.max(1));
        if o.max_width_fraction.is_some_and(|m| wf > m) {
            failures.push(format!(
                "{at}: overlay {} px wide is {wf:.2} of the rendition, over {:?}",
                ov.width, o.max_width_fraction
            ));
        }
        if o.max_height_fraction.is_some_and(|m| hf > m) {
            failures.push(format!(
                "{at}: overlay {} px high is {hf:.2} of the rendition, over {:?}",
                ov.height, o.max_height_fraction
            ));
        }
        if o.min_opacity.is_some_and(|m| ov.opacity < m)
            || o.max_opacity.is_some_and(|m| ov.opacity > m)
        {
            failures.push(format!(
                "{at}: opacity {} outside [{:?}, {:?}]",
                ov.opacity, o.min_opacity, o.max_opacity
            ));
        }
    }
}

fn check_notifications(want: &[NotificationExpect], trial: &Trial, failures: &mut Vec<String>) {
    let got = &trial.notifications;
    if got.len() != want.len() {
        failures.push(format!(
            "expected {} notification(s), got {}{}",
            want.len(),
            got.len(),
            if got.is_empty() {
                String::new()
            } else {
                format!(
                    " (to {})",
                    got.iter()
                        .map(|n| n.sink.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
    }
    for (i, (w, n)) in want.iter().zip(got).enumerate() {
        if w.sink.as_ref().is_some_and(|s| *s != n.sink) {
            failures.push(format!(
                "notification {}: expected sink {:?}, got {:?}",
                i + 1,
                w.sink.as_deref().unwrap_or_default(),
                n.sink
            ));
        }
        for (what, needle, text) in [
            ("subject", &w.subject_contains, &n.subject),
            ("body", &w.body_contains, &n.body),
        ] {
            if let Some(needle) = needle.as_ref().filter(|s| !text.contains(s.as_str())) {
                failures.push(format!(
                    "notification {}: {what} {text:?} does not contain {needle:?}",
                    i + 1
                ));
            }
        }
    }
}
