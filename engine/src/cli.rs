//! The `mediaflow` command line: argument parsing, dispatch to the library, and exit codes
//! (0 = success, 1 = a job or plugin failed, 2 = usage or configuration error).

use crate::plugin::registry::publish::{self, Draft};
use crate::plugin::registry::{Registry, listing};
use crate::plugin::{
    self, HostConfig, PluginHost, PluginSpec, World, descriptor::PluginDescriptor, inspect,
    scaffold,
};
use crate::telemetry::{self, LogFormat};
use crate::workbench;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Turn uploads into renditions; extend with WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "mediaflow", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        env = "MEDIAFLOW_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline on local files (no queue, no AWS): renditions, manifest.json per
    /// file and an HTML report in --out.
    Process {
        /// Source files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Profile (default: the config's `default_profile`).
        #[arg(long)]
        profile: Option<String>,
        /// Config file (TOML); MEDIAFLOW_* variables override it.
        #[arg(long, env = "MEDIAFLOW_CONFIG")]
        config: Option<PathBuf>,
        /// Files processed at once (default: number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Stitch the files (images, in the order given) into one video, written to
        /// DIR/slideshow/ — the profile's `video.slideshow_*` settings give its size and timing.
        #[arg(long)]
        slideshow: bool,
    },
    /// Consume the job queue until SIGTERM/SIGINT (local mode: the embedded queue and
    /// filesystem buckets under `worker.data_dir`).
    Worker {
        /// Config file (TOML); MEDIAFLOW_* variables override it.
        #[arg(long, env = "MEDIAFLOW_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Put files into the source bucket and enqueue an S3-style event for each (local mode).
    Submit {
        /// Files to submit.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Config file (TOML); MEDIAFLOW_* variables override it.
        #[arg(long, env = "MEDIAFLOW_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Plugin authoring and inspection.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// The native libraries built into this binary, their versions and licences, and
    /// FFmpeg's build configuration.
    Licenses,
    /// The job API (`[api] listen`) until SIGTERM/SIGINT; locally with a worker in the same
    /// process.
    Serve {
        /// Config file (TOML); MEDIAFLOW_* variables override it.
        #[arg(long, env = "MEDIAFLOW_CONFIG")]
        config: Option<PathBuf>,
        /// Serve the API only (on ECS the worker is its own service).
        #[arg(long)]
        no_worker: bool,
    },
    /// API keys of `serve`, kept hashed in the job index.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Jobs in the job index.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// The job index itself.
    #[command(subcommand)]
    Index(IndexCommand),
}

/// `mediaflow index …`
#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Recreate the job index from the manifests in the output bucket (they are the truth
    /// about what was recorded); jobs without a manifest are kept.
    Rebuild {
        /// Config file (TOML); MEDIAFLOW_* variables override it.
        #[arg(long, env = "MEDIAFLOW_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Create the DynamoDB table `api.index_table` with its indexes (on-demand billing), for
    /// setups without the CloudFormation stack.
    CreateTable {
        /// Config file (TOML); MEDIAFLOW_* variables override it.
        #[arg(long, env = "MEDIAFLOW_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// `mediaflow api-key …`
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Make a key and print it (once: only its hash is kept).
    Create {
        /// Who or what uses it.
        #[arg(long)]
        name: String,
        /// Scopes: read, write (repeatable; default both).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Config file (TOML); MEDIAFLOW_* variables override it.
        #[arg(long, env = "MEDIAFLOW_CONFIG")]
        config: Option<PathBuf>,
    },
    /// The keys: name, scopes, created, revoked.
    List {
        /// Config file (TOML); MEDIAFLOW_* variables override it.
        #[arg(long, env = "MEDIAFLOW_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Revoke a key by name (requests with it get 403).
    Revoke {
        /// The key's name.
        name: String,
        /// Config file (TOML); MEDIAFLOW_* variables override it.
        #[arg(long, env = "MEDIAFLOW_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// `mediaflow jobs …`
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Jobs newest first.
    List {
        /// Only jobs with this status.
        #[arg(long)]
        status: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Config file (TOML); MEDIAFLOW_* variables override it.
        #[arg(long, env = "MEDIAFLOW_CONFIG")]
        config: Option<PathBuf>,
    },
    /// One job's record, as JSON.
    Show {
        /// The job id.
        id: String,
        /// Config file (TOML); MEDIAFLOW_* variables override it.
        #[arg(long, env = "MEDIAFLOW_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Cancel a job: at once if queued, within about a second if running.
    Cancel {
        /// The job id.
        id: String,
        /// Config file (TOML); MEDIAFLOW_* variables override it.
        #[arg(long, env = "MEDIAFLOW_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// `mediaflow plugin …`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Scaffold a Rust plugin crate that builds as-is.
    New {
        /// metadata-extractor, watermarker or notification-rule.
        kind: String,
        /// Plugin name (a-z, 0-9, '-').
        name: String,
        /// Directory to create (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Use the SDK at this path instead of the default.
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Show a component's world, WIT version, imports, exports, size and sha256.
    Inspect {
        /// The .wasm file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Load a component into the sandbox and run a smoke call on sample input.
    Validate {
        /// The .wasm file.
        file: PathBuf,
        /// Its plugin.toml (default config and limits); default: plugin.toml beside the file.
        #[arg(long)]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        set: PluginSettings,
    },
    /// Run a plugin on real files through the real pipeline and sandbox and show what it did:
    /// a metadata extractor's entries, a watermarker's overlay (written as a PNG) and the
    /// rendition it was blended into, a rule's notifications for the job's event.
    Run {
        /// The plugin: a .wasm component, a plugin crate (built for wasm32-wasip2), or a
        /// directory holding plugin.toml and plugin.wasm.
        plugin: PathBuf,
        /// Media files to run it on.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where the jobs' outputs, the overlays and the report go.
        #[arg(long, default_value = "plugin-run")]
        out: PathBuf,
        /// The event a rule evaluates: succeeded, failed, retrying, dead-lettered, or a job's
        /// manifest.json; default: each file's own job.
        #[arg(long)]
        event: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        set: PluginSettings,
    },
    /// Write the WIT contract this engine hosts (`plugin.wit`, package mediaflow:plugin) into
    /// a directory, for the toolchains of other languages (componentize-py `-d DIR`, jco
    /// `--wit DIR`) — no checkout of the engine needed.
    Wit {
        /// The directory to write `plugin.wit` into.
        #[arg(default_value = "wit")]
        dir: PathBuf,
    },
    /// Check a plugin against its fixtures (`fixtures/*.toml`: an input file and what the
    /// plugin should return for it); exit 1 if any fails.
    Test {
        /// The plugin: a plugin crate, a .wasm component, or a directory holding plugin.toml
        /// and plugin.wasm.
        #[arg(default_value = ".")]
        plugin: PathBuf,
        /// The fixtures' directory; default: `fixtures` in the crate (or beside the .wasm).
        #[arg(long)]
        fixtures: Option<PathBuf>,
        /// Where the fixtures' jobs write (default: a temporary directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Validate a plugin locally (world, size cap, smoke call) and publish it to the
    /// registry: NAME/VERSION/plugin.wasm, then plugin.toml with its sha256.
    Publish {
        /// The .wasm component.
        file: PathBuf,
        /// Plugin name (a-z, 0-9, '-'); default: `name` in the manifest.
        #[arg(long)]
        name: Option<String>,
        /// Version (semver); default: `version` in the manifest.
        #[arg(long)]
        version: Option<String>,
        /// One line on what it does; default: the manifest's.
        #[arg(long)]
        description: Option<String>,
        /// Its plugin.toml (world, default config, limits); default: plugin.toml beside the
        /// file, if there is one.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Also point this channel (e.g. `stable`) at the new version.
        #[arg(long)]
        channel: Option<String>,
        /// Engine config naming the registry (`plugins.registry`); MEDIAFLOW_* variables
        /// override it.
        #[arg(long, env = "MEDIAFLOW_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Point a channel at a published (or bundled) version: promote, or roll back.
    Channel {
        /// Plugin name.
        name: String,
        /// Channel name (e.g. `stable`).
        channel: String,
        /// The version it should name.
        version: String,
        /// Engine config naming the registry; MEDIAFLOW_* variables override it.
        #[arg(long, env = "MEDIAFLOW_CONFIG")]
        config: Option<PathBuf>,
    },
    /// List the plugins an engine with this config has (bundled, local, registry), the
    /// channels, and the version each profile's plugins resolve to.
    List {
        /// Engine config; MEDIAFLOW_* variables override it.
        #[arg(long, env = "MEDIAFLOW_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// A plugin's configuration on the command line.
#[derive(Debug, clap::Args)]
pub struct PluginSettings {
    /// Plugin configuration over its plugin.toml's, KEY=VALUE (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// (`--config` names an engine config file; the plugin's own settings are `--set`.)
    #[arg(long = "config", hide = true)]
    config: Vec<String>,
}

impl PluginSettings {
    fn pairs(self) -> Result<std::collections::BTreeMap<String, String>, CliError> {
        if let Some(c) = self.config.first() {
            return Err(CliError::Usage(format!(
                "--config {c:?}: `--config` names an engine config file (as in `plugin publish` \
                 and `plugin list`); set the plugin's configuration with --set KEY=VALUE"
            )));
        }
        self.set
            .into_iter()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                    .ok_or_else(|| CliError::Usage(format!("--set {kv:?}: expected KEY=VALUE")))
            })
            .collect()
    }
}

/// Errors at the command line's edge, with the exit code they map to.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Failed(_) => ExitCode::from(1),
        }
    }
}

/// Parse the command line, run it, and map the outcome to an exit code.
pub fn main() -> ExitCode {
    // The same binary is the isolated decoder's child process.
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(crate::media::decoder::CHILD_ARG))
    {
        return crate::media::decoder::child::main();
    }
    // Before any thread exists: it sets an environment variable.
    crate::media::video::codec::route_svt_av1_log();
    let cli = Cli::parse();
    let quiet = matches!(
        cli.command,
        Command::Plugin(PluginCommand::Run { .. } | PluginCommand::Test { .. })
    );
    telemetry::init(cli.log_format, cli.verbose, quiet);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn run_admin(r: Result<(), crate::api::admin::AdminError>) -> Result<(), CliError> {
    r.map_err(|e| match e {
        crate::api::admin::AdminError::Usage(m) => CliError::Usage(m),
        other => CliError::Failed(other.to_string()),
    })
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Plugin(cmd) => run_plugin(cmd),
        Command::Licenses => {
            for l in crate::licences::libraries() {
                println!(
                    "{:<14} {:<26} {:<34} {}",
                    l.name, l.version, l.licence, l.linked
                );
            }
            println!(
                "\nFFmpeg configuration: {}",
                crate::licences::ffmpeg_configuration()
            );
            Ok(())
        }
        Command::Serve { config, no_worker } => crate::api::run(config.as_deref(), no_worker)
            .map_err(|e| match e {
                e @ (crate::api::ServeError::Usage(_) | crate::api::ServeError::Bind { .. }) => {
                    CliError::Usage(e.to_string())
                }
                other => CliError::Failed(other.to_string()),
            }),
        Command::ApiKey(cmd) => run_admin(crate::api::admin::api_key(cmd)),
        Command::Jobs(cmd) => run_admin(crate::api::admin::jobs(cmd)),
        Command::Index(cmd) => run_admin(crate::api::admin::index(cmd)),
        Command::Worker { config } => crate::worker::run(config.as_deref()).map_err(|e| match e {
            crate::worker::WorkerError::Setup(e) => CliError::Usage(e.to_string()),
            e @ crate::worker::WorkerError::Ops(_) => CliError::Usage(e.to_string()),
            other => CliError::Failed(other.to_string()),
        }),
        Command::Submit { files, config } => {
            let config = crate::config::Config::load(config.as_deref())
                .map_err(|e| CliError::Usage(e.to_string()))?;
            let submitted = crate::worker::submit(&config, &files).map_err(|e| match e {
                crate::worker::WorkerError::Usage(m) => CliError::Usage(m),
                other => CliError::Failed(other.to_string()),
            })?;
            for (key, id) in submitted {
                println!(
                    "submitted s3://{}/{key} (message {id})",
                    config.worker.source_bucket
                );
            }
            Ok(())
        }
        Command::Process {
            files,
            out,
            profile,
            config,
            jobs,
            slideshow,
        } => {
            let opts = crate::process::Options {
                files,
                out,
                profile,
                config,
                jobs,
                slideshow,
            };
            let summary = crate::process::run(&opts).map_err(|e| CliError::Usage(e.to_string()))?;
            println!(
                "{} succeeded, {} failed; open {}",
                summary.succeeded,
                summary.failed,
                summary.report.display()
            );
            if summary.failed > 0 {
                return Err(CliError::Failed(format!(
                    "{} of {} files failed (see their manifest.json)",
                    summary.failed,
                    summary.failed + summary.succeeded
                )));
            }
            Ok(())
        }
    }
}

fn host() -> Result<PluginHost, CliError> {
    PluginHost::new(&HostConfig::default()).map_err(|e| CliError::Failed(e.to_string()))
}

fn read_wasm(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::Usage(format!("reading {}: {e}", path.display())))
}

fn run_plugin(cmd: PluginCommand) -> Result<(), CliError> {
    match cmd {
        PluginCommand::New {
            kind,
            name,
            dir,
            sdk_path,
        } => plugin_new(kind, name, dir, sdk_path),
        PluginCommand::Inspect { file, json } => {
            let wasm = read_wasm(&file)?;
            let report =
                inspect::inspect(&host()?, &wasm).map_err(|e| CliError::Failed(e.to_string()))?;
            if json {
                let text = serde_json::to_string_pretty(&report)
                    .map_err(|e| CliError::Failed(e.to_string()))?;
                println!("{text}");
            } else {
                print!("{report}");
            }
            Ok(())
        }
        PluginCommand::Validate {
            file,
            manifest,
            set,
        } => plugin_validate(file, manifest, set.pairs()?),
        PluginCommand::Run {
            plugin,
            files,
            out,
            event,
            json,
            set,
        } => plugin_run(&plugin, &files, &out, event.as_deref(), json, set.pairs()?),
        PluginCommand::Wit { dir } => plugin_wit(&dir),
        PluginCommand::Test {
            plugin,
            fixtures,
            out,
        } => plugin_test(&plugin, fixtures.as_deref(), out.as_deref()),
        PluginCommand::Publish {
            file,
            name,
            version,
            description,
            manifest,
            channel,
            config,
        } => {
            let draft = Draft::read(&file, manifest.as_deref(), name, version, description)
                .map_err(publish_error)?;
            let wasm = read_wasm(&file)?;
            let (host, registry) = registry_env(config.as_deref())?;
            let published =
                publish::publish(&registry, &host, &wasm, &draft).map_err(publish_error)?;
            println!("{published}");
            if let Some(channel) = channel {
                let m = &published.manifest;
                let before = publish::set_channel(&registry, &m.name, &channel, &m.version)
                    .map_err(publish_error)?;
                print_channel(&m.name, &channel, &m.version, before);
            }
            Ok(())
        }
        PluginCommand::Channel {
            name,
            channel,
            version,
            config,
        } => {
            let version = semver::Version::parse(&version)
                .map_err(|e| CliError::Usage(format!("{version:?} is not a version: {e}")))?;
            let (_, registry) = registry_env(config.as_deref())?;
            let before = publish::set_channel(&registry, &name, &channel, &version)
                .map_err(publish_error)?;
            print_channel(&name, &channel, &version, before);
            Ok(())
        }
        PluginCommand::List { config } => {
            let config = crate::config::Config::load(config.as_deref())
                .map_err(|e| CliError::Usage(e.to_string()))?;
            let host = std::sync::Arc::new(host_for(&config)?);
            let base = plugin::catalog::Catalog::with_local(&host, &config.plugins.local)
                .map_err(|e| CliError::Failed(e.to_string()))?;
            let text = listing::describe(&config, host, base)
                .map_err(|e| CliError::Failed(e.to_string()))?;
            print!("{text}");
            Ok(())
        }
    }
}

/// `mediaflow plugin new`: scaffold a plugin crate.
fn plugin_new(
    kind: String,
    name: String,
    dir: Option<PathBuf>,
    sdk_path: Option<PathBuf>,
) -> Result<(), CliError> {
    let world = World::parse(&kind).ok_or_else(|| {
        CliError::Usage(format!(
            "unknown plugin kind {kind:?}: use metadata-extractor, watermarker or notification-rule"
        ))
    })?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
    let crate_name = name.replace('-', "_");
    let sdk = match sdk_path {
        Some(p) => scaffold::SdkSource::Path(
            p.canonicalize()
                .map_err(|e| CliError::Usage(format!("--sdk-path {}: {e}", p.display())))?,
        ),
        None => scaffold::SdkSource::default_for_this_engine(),
    };
    let files =
        scaffold::scaffold(world, &name, &dir, &sdk).map_err(|e| CliError::Usage(e.to_string()))?;
    println!("created {world} plugin `{name}` in {}:", dir.display());
    for f in files {
        println!("  {}", f.display());
    }
    println!(
        "\nnext:\n  cd {}\n  mediaflow plugin run . fixtures/sample.png     # build it, run it on a file, see what it returns\n  mediaflow plugin test .                        # check it against fixtures/*.toml\n  cargo build --release --target wasm32-wasip2\n  mediaflow plugin publish target/wasm32-wasip2/release/{crate_name}.wasm --manifest plugin.toml\n\nthen use it in a profile as \"{name}@^0.1\"; while editing, list the crate in plugins.local\n(MEDIAFLOW_PLUGINS__LOCAL='[\"{}\"]') and a running worker reloads it as you save.",
        dir.display(),
        dir.canonicalize().unwrap_or_else(|_| dir.clone()).display(),
    );
    Ok(())
}

/// `mediaflow plugin validate`: load a plugin as its manifest describes it and make a smoke
/// call.
fn plugin_validate(
    file: PathBuf,
    manifest: Option<PathBuf>,
    config: std::collections::BTreeMap<String, String>,
) -> Result<(), CliError> {
    let wasm = read_wasm(&file)?;
    let manifest_path = manifest.or_else(|| {
        let beside = file.with_file_name("plugin.toml");
        beside.exists().then_some(beside)
    });
    let mut spec = match &manifest_path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| CliError::Usage(format!("reading {}: {e}", p.display())))?;
            let m = PluginDescriptor::parse(&text)
                .map_err(|e| CliError::Usage(format!("{}: {e}", p.display())))?;
            let mut spec = PluginSpec::new(&m.name, m.version.to_string());
            spec.config = m.config_strings();
            spec.limits = m.limits;
            spec.expect = Some(m.world);
            spec
        }
        None => {
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().replace('_', "-"))
                .unwrap_or_default();
            PluginSpec::new(stem, "0.0.0")
        }
    };
    spec.config.extend(config);
    let host = host()?;
    let v = inspect::validate(&host, spec, &wasm)
        .map_err(|e| CliError::Failed(format!("validation failed: {e}")))?;
    println!(
        "ok: {}@{} is a {} plugin (mediaflow:plugin@{}), {} bytes, {}",
        v.plugin.name(),
        v.plugin.version(),
        v.plugin.world(),
        v.plugin.wit_version(),
        v.plugin.size(),
        v.plugin.digest()
    );
    println!("smoke call ({:.1} ms): {}", v.call_ms, v.summary);
    Ok(())
}

/// `mediaflow plugin run`: the plugin on each file, its results printed.
fn plugin_run(
    plugin: &Path,
    files: &[PathBuf],
    out: &Path,
    event: Option<&str>,
    json: bool,
    config: std::collections::BTreeMap<String, String>,
) -> Result<(), CliError> {
    let failed = |e: workbench::WorkbenchError| CliError::Failed(e.to_string());
    let event = event
        .map(workbench::event_named)
        .transpose()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let bench = workbench::Bench::open(plugin, config).map_err(failed)?;
    let p = bench.plugin();
    let trials = bench.run(files, out, event.as_ref()).map_err(failed)?;
    if json {
        let doc = serde_json::json!({
            "plugin": { "name": p.name(), "version": p.version(), "world": p.world().to_string(), "digest": p.digest(), "load_ms": bench.load_ms },
            "files": trials,
        });
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
    } else {
        println!(
            "{}@{}: a {} plugin, {} bytes, {} (built and loaded in {:.0} ms)",
            p.name(),
            p.version(),
            p.world(),
            p.size(),
            p.digest(),
            bench.load_ms
        );
        for t in &trials {
            print!("{t}");
        }
        println!("report: {}", out.join("index.html").display());
    }
    Ok(())
}

/// `mediaflow plugin wit`: the WIT contract written into `dir`.
fn plugin_wit(dir: &Path) -> Result<(), CliError> {
    let file = dir.join("plugin.wit");
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&file, plugin::WIT))
        .map_err(|e| CliError::Failed(format!("writing {}: {e}", file.display())))?;
    println!(
        "wrote {} (mediaflow:plugin@{}; this engine also hosts {})",
        file.display(),
        plugin::HOSTED_WIT_VERSIONS
            .last()
            .copied()
            .unwrap_or_default(),
        plugin::HOSTED_WIT_VERSIONS.join(", ")
    );
    Ok(())
}

/// `mediaflow plugin test`: the plugin against its fixtures.
fn plugin_test(plugin: &Path, fixtures: Option<&Path>, out: Option<&Path>) -> Result<(), CliError> {
    let report = workbench::fixture::test(plugin, fixtures, out).map_err(|e| match e {
        workbench::WorkbenchError::Input(_) => CliError::Usage(e.to_string()),
        other => CliError::Failed(other.to_string()),
    })?;
    print!("{report}");
    if report.passed() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "{} of {} fixtures failed",
            report.failed(),
            report.len()
        )))
    }
}

/// A plugin host with the config's cache and size cap.
fn host_for(config: &crate::config::Config) -> Result<PluginHost, CliError> {
    PluginHost::new(&HostConfig {
        cache_dir: config
            .plugins
            .cache_dir
            .clone()
            .or_else(plugin::default_cache_dir),
        max_wasm_bytes: config.plugins.max_wasm_bytes,
        ..HostConfig::default()
    })
    .map_err(|e| CliError::Failed(e.to_string()))
}

/// A host for the config and the registry it names (a usage error when it names none).
fn registry_env(config: Option<&Path>) -> Result<(PluginHost, Registry), CliError> {
    let config = crate::config::Config::load(config).map_err(|e| CliError::Usage(e.to_string()))?;
    let host = host_for(&config)?;
    let registry = Registry::from_config(&config)
        .map_err(|e| CliError::Usage(e.to_string()))?
        .ok_or_else(|| {
            CliError::Usage(
                "no plugin registry: plugins.registry is empty (set it, e.g. \
                 MEDIAFLOW_PLUGINS__REGISTRY=s3://BUCKET/plugins/)"
                    .into(),
            )
        })?;
    Ok((host, registry))
}

fn publish_error(e: publish::PublishError) -> CliError {
    match e {
        publish::PublishError::Usage(_) | publish::PublishError::UnknownVersion(_) => {
            CliError::Usage(e.to_string())
        }
        other => CliError::Failed(other.to_string()),
    }
}

fn print_channel(
    name: &str,
    channel: &str,
    version: &semver::Version,
    before: Option<semver::Version>,
) {
    match before {
        Some(b) if b == *version => println!("channel {name}/{channel} already names {version}"),
        Some(b) => println!("channel {name}/{channel} -> {version} (was {b})"),
        None => println!("channel {name}/{channel} -> {version} (new)"),
    }
}
