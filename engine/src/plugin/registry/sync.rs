//! Keeping an engine's plugins in step with the registry. [`Syncer::sync`] lists the
//! registry and fetches only what changed (by ETag): for a new or changed version it checks
//! the listed size against the cap, reads `plugin.toml`, verifies the wasm's sha256 against
//! it, then compiles (through the on-disk cache) and checks the world. A version that fails is
//! refused with a logged reason, never half-loaded, and not fetched again while its objects'
//! ETags stay the same; a version that disappears is dropped. A failed listing changes
//! nothing: an unreachable registry is not an empty one. [`Watcher`] runs `sync` on a thread
//! of its own and swaps each new catalog into the [`LiveCatalog`].

use super::layout::{self, Key};
use super::{Registry, RegistryError};
use crate::plugin::catalog::{Catalog, LiveCatalog, spec_for, verify_digest};
use crate::plugin::descriptor::PluginDescriptor;
use crate::plugin::reload::{self, LocalPlugins};
use crate::plugin::{Plugin, PluginError, PluginErrorKind, PluginHost};
use crate::shutdown::{CancellationToken, park_or_cancelled};
use crate::storage::{ObjectInfo, StorageError};
use semver::Version;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the registry holds for one version, as this engine last saw it.
#[derive(Debug, Clone)]
pub enum VersionState {
    /// Verified, compiled, in the catalog.
    Loaded {
        /// The plugin.
        plugin: Plugin,
        /// Its `plugin.toml`.
        manifest: PluginDescriptor,
    },
    /// Refused; not in the catalog until its objects change.
    Refused {
        /// Stable code (`digest_mismatch`, `wrong_world`, `too_large`, `bad_manifest`,
        /// `shadowed`, …).
        code: &'static str,
        /// Why, in words.
        reason: String,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    wasm_etag: String,
    toml_etag: String,
    state: VersionState,
}

#[derive(Debug, Clone)]
struct ChannelEntry {
    etag: String,
    target: Result<Version, String>,
}

/// A change to the plugins new jobs get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A version was verified and loaded.
    Added {
        /// `name@version`.
        plugin: String,
        /// `sha256:<hex>`.
        digest: String,
    },
    /// A loaded version's objects changed and the new ones verified.
    Replaced {
        /// `name@version`.
        plugin: String,
        /// `sha256:<hex>` of the new bytes.
        digest: String,
    },
    /// A loaded version is gone (deleted, or its objects changed and were refused).
    Removed {
        /// `name@version`.
        plugin: String,
        /// Why.
        why: String,
    },
    /// A channel now names another version (or none).
    Channel {
        /// Plugin name.
        name: String,
        /// Channel name.
        channel: String,
        /// The version it named before.
        from: Option<Version>,
        /// The version it names now.
        to: Option<Version>,
        /// Whether that version is loaded.
        loaded: bool,
    },
}

impl Change {
    /// Log it (a warning when it shadows a bundled plugin).
    pub fn log(&self, sync_ms: f64) {
        tracing::info!(sync_ms, "registry: {self}");
        if let Change::Added { plugin, .. } | Change::Replaced { plugin, .. } = self
            && let Some((name, version)) = plugin.split_once('@')
            && let Ok(version) = Version::parse(version)
            && let Some(w) = crate::plugin::bundled::shadowing(name, &version)
        {
            tracing::warn!("registry: {w}");
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: &Option<Version>| v.as_ref().map_or("none".to_string(), |v| v.to_string());
        match self {
            Change::Added { plugin, digest } => {
                write!(f, "{plugin} added ({digest}): in use for new jobs")
            }
            Change::Replaced { plugin, digest } => write!(
                f,
                "{plugin} replaced by other bytes ({digest}) although published versions are \
                 immutable: in use for new jobs"
            ),
            Change::Removed { plugin, why } => {
                write!(f, "{plugin} removed ({why}): new jobs no longer get it")
            }
            Change::Channel {
                name,
                channel,
                from,
                to,
                loaded,
            } => {
                write!(
                    f,
                    "channel {name}/{channel} -> {} (was {})",
                    opt(to),
                    opt(from)
                )?;
                if to.is_some() && !loaded {
                    write!(
                        f,
                        ", which is not loaded: profiles pinned to it find no plugin"
                    )?;
                }
                Ok(())
            }
        }
    }
}

enum Fetched {
    Loaded(Plugin, Box<PluginDescriptor>),
    Refused(&'static str, String),
    /// Not now (a passing storage error, or deleted meanwhile): try again next poll.
    Retry(String),
}

/// The engine's view of the registry, and the catalog it makes.
#[derive(Debug)]
pub struct Syncer {
    registry: Registry,
    host: Arc<PluginHost>,
    base: Catalog,
    max_wasm_bytes: u64,
    versions: BTreeMap<(String, Version), Entry>,
    channels: BTreeMap<(String, String), ChannelEntry>,
    /// Keys outside the layout already warned about, with the ETag warned at.
    warned: BTreeMap<String, String>,
}

fn label(name: &str, version: &Version) -> String {
    format!("{name}@{version}")
}

impl Syncer {
    /// A syncer for `registry`, loading with `host` on top of `base` (the bundled and local
    /// plugins, which a registry version of the same name and version never replaces).
    pub fn new(
        registry: Registry,
        host: Arc<PluginHost>,
        base: Catalog,
        max_wasm_bytes: u64,
    ) -> Self {
        Self {
            registry,
            host,
            base,
            max_wasm_bytes,
            versions: BTreeMap::new(),
            channels: BTreeMap::new(),
            warned: BTreeMap::new(),
        }
    }

    /// Put the registry's versions over `base` from now on (the local plugins, reloaded).
    pub fn set_base(&mut self, base: Catalog) {
        self.base = base;
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every version seen in the registry and what became of it.
    pub fn versions(&self) -> impl Iterator<Item = (&str, &Version, &VersionState)> {
        self.versions
            .iter()
            .map(|((n, v), e)| (n.as_str(), v, &e.state))
    }

    /// The loaded versions' plugins.
    pub fn loaded(&self) -> Vec<&Plugin> {
        self.versions()
            .filter_map(|(_, _, s)| match s {
                VersionState::Loaded { plugin, .. } => Some(plugin),
                VersionState::Refused { .. } => None,
            })
            .collect()
    }

    /// The refused versions: (`name@version`, reason).
    pub fn refused(&self) -> Vec<(String, String)> {
        self.versions()
            .filter_map(|(n, v, s)| match s {
                VersionState::Refused { reason, .. } => Some((label(n, v), reason.clone())),
                VersionState::Loaded { .. } => None,
            })
            .collect()
    }

    /// Every channel file seen: (name, channel, the version or why it was refused).
    pub fn channels(&self) -> impl Iterator<Item = (&str, &str, Result<&Version, &str>)> {
        self.channels.iter().map(|((n, c), e)| {
            (
                n.as_str(),
                c.as_str(),
                e.target.as_ref().map_err(String::as_str),
            )
        })
    }

    /// The catalog: the base plugins, the loaded registry versions and the channels.
    pub fn catalog(&self) -> Catalog {
        let mut c = self.base.clone();
        for ((_, version), e) in &self.versions {
            if let VersionState::Loaded { plugin, .. } = &e.state {
                c.insert(version.clone(), plugin.clone());
            }
        }
        for ((name, channel), e) in &self.channels {
            if let Ok(v) = &e.target {
                c.set_channel(name, channel, v.clone());
            }
        }
        c
    }

    fn is_loaded(&self, name: &str, version: &Version) -> bool {
        self.base.contains(name, version)
            || self
                .versions
                .get(&(name.to_string(), version.clone()))
                .is_some_and(|e| matches!(e.state, VersionState::Loaded { .. }))
    }

    /// List the registry and bring the view up to date; the changes new jobs will see (empty:
    /// the catalog is unchanged). A failed listing is an error and changes nothing.
    pub fn sync(&mut self) -> Result<Vec<Change>, RegistryError> {
        let listing = self.registry.list()?;
        let (versions, channels) = self.sort_listing(listing);
        let mut changes = self.forget_gone(&versions);
        for (key, objects) in versions {
            // A wasm without its plugin.toml is a publish in progress: not committed yet.
            let (Some(wasm), Some(toml)) = objects else {
                continue;
            };
            let before = self.versions.get(&key);
            if before.is_some_and(|e| e.wasm_etag == wasm.etag && e.toml_etag == toml.etag) {
                continue;
            }
            let was_loaded = before.is_some_and(|e| matches!(e.state, VersionState::Loaded { .. }));
            let plugin_label = label(&key.0, &key.1);
            let state = match self.fetch(&key.0, &key.1, &wasm, &toml) {
                Fetched::Retry(why) => {
                    tracing::warn!(
                        plugin = %plugin_label,
                        "registry: {plugin_label} not loaded now, retrying at the next poll: {why}"
                    );
                    continue;
                }
                Fetched::Refused(code, reason) => {
                    tracing::error!(
                        plugin = %plugin_label,
                        error_code = code,
                        "registry: {plugin_label} refused: {reason}"
                    );
                    if was_loaded {
                        changes.push(Change::Removed {
                            plugin: plugin_label,
                            why: format!("refused: {reason}"),
                        });
                    }
                    VersionState::Refused { code, reason }
                }
                Fetched::Loaded(plugin, manifest) => {
                    let manifest = *manifest;
                    let digest = plugin.digest();
                    changes.push(if was_loaded {
                        Change::Replaced {
                            plugin: plugin_label,
                            digest,
                        }
                    } else {
                        Change::Added {
                            plugin: plugin_label,
                            digest,
                        }
                    });
                    VersionState::Loaded { plugin, manifest }
                }
            };
            self.versions.insert(
                key,
                Entry {
                    wasm_etag: wasm.etag,
                    toml_etag: toml.etag,
                    state,
                },
            );
        }
        self.sync_channels(channels, &mut changes);
        Ok(changes)
    }

    /// The listing by version (wasm and toml objects) and by channel; keys that fit no layout
    /// are warned about once per ETag.
    fn sort_listing(&mut self, listing: Vec<(String, ObjectInfo)>) -> (Listed, ListedChannels) {
        let mut versions: Listed = BTreeMap::new();
        let mut channels: ListedChannels = BTreeMap::new();
        let mut strays = BTreeMap::new();
        for (key, info) in listing {
            match layout::parse(&key) {
                None => {}
                Some(Err(reason)) => {
                    if self.warned.get(&key) != Some(&info.etag) {
                        tracing::warn!("registry: ignoring {}: {reason}", self.registry.uri(&key));
                    }
                    strays.insert(key, info.etag);
                }
                Some(Ok(Key::Wasm(n, v))) => versions.entry((n, v)).or_default().0 = Some(info),
                Some(Ok(Key::Toml(n, v))) => versions.entry((n, v)).or_default().1 = Some(info),
                Some(Ok(Key::Channel(n, c))) => {
                    channels.insert((n, c), info);
                }
            }
        }
        self.warned = strays;
        (versions, channels)
    }

    /// Forget the versions no longer complete in the registry: gone for new jobs.
    fn forget_gone(&mut self, listed: &Listed) -> Vec<Change> {
        let gone: Vec<(String, Version)> = self
            .versions
            .keys()
            .filter(|k| !matches!(listed.get(*k), Some((Some(_), Some(_)))))
            .cloned()
            .collect();
        let mut changes = Vec::new();
        for k in gone {
            if let Some(Entry {
                state: VersionState::Loaded { .. },
                ..
            }) = self.versions.remove(&k)
            {
                changes.push(Change::Removed {
                    plugin: label(&k.0, &k.1),
                    why: "deleted from the registry".into(),
                });
            }
        }
        changes
    }

    fn sync_channels(
        &mut self,
        listed: BTreeMap<(String, String), ObjectInfo>,
        changes: &mut Vec<Change>,
    ) {
        let gone: Vec<(String, String)> = self
            .channels
            .keys()
            .filter(|k| !listed.contains_key(*k))
            .cloned()
            .collect();
        for (name, channel) in gone {
            if let Some(ChannelEntry {
                target: Ok(from), ..
            }) = self.channels.remove(&(name.clone(), channel.clone()))
            {
                changes.push(Change::Channel {
                    name,
                    channel,
                    from: Some(from),
                    to: None,
                    loaded: false,
                });
            }
        }
        for ((name, channel), info) in listed {
            let k = (name, channel);
            let before = self.channels.get(&k);
            if before.is_some_and(|e| e.etag == info.etag) {
                continue;
            }
            let from = before.and_then(|e| e.target.clone().ok());
            let key = layout::channel_key(&k.0, &k.1);
            let target = if info.bytes > layout::MAX_CHANNEL_BYTES {
                Err(format!(
                    "{} bytes; a channel file holds one version",
                    info.bytes
                ))
            } else {
                match self.registry.get(&key) {
                    Ok(bytes) => layout::parse_channel(&bytes),
                    Err(e) => match retry_or_refuse(e) {
                        Ok(why) => {
                            tracing::warn!(
                                "registry: channel {}/{} not read now, retrying at the next poll: {why}",
                                k.0,
                                k.1
                            );
                            continue;
                        }
                        Err(reason) => Err(reason),
                    },
                }
            };
            if let Err(reason) = &target {
                tracing::error!(
                    error_code = "bad_channel",
                    "registry: channel {}/{} refused: {reason}",
                    k.0,
                    k.1
                );
            }
            let to = target.clone().ok();
            if from != to {
                let loaded = to.as_ref().is_some_and(|v| self.is_loaded(&k.0, v));
                changes.push(Change::Channel {
                    name: k.0.clone(),
                    channel: k.1.clone(),
                    from,
                    to,
                    loaded,
                });
            }
            self.channels.insert(
                k,
                ChannelEntry {
                    etag: info.etag,
                    target,
                },
            );
        }
    }

    /// Fetch, verify and compile one version.
    fn fetch(
        &self,
        name: &str,
        version: &Version,
        wasm: &ObjectInfo,
        toml: &ObjectInfo,
    ) -> Fetched {
        let plugin_label = label(name, version);
        let kind_of = |e: PluginError| Fetched::Refused(e.detail_code(), e.kind.to_string());
        if self.base.contains(name, version) {
            return Fetched::Refused(
                "shadowed",
                format!(
                    "this engine already has {plugin_label} (bundled or plugins.local), which \
                     wins; publish another version"
                ),
            );
        }
        if toml.bytes > layout::MAX_TOML_BYTES {
            return kind_of(PluginError::new(
                &plugin_label,
                PluginErrorKind::BadManifest(format!(
                    "{} bytes, over the {}-byte cap",
                    toml.bytes,
                    layout::MAX_TOML_BYTES
                )),
            ));
        }
        // The size cap is checked on the listing, before anything is downloaded.
        if wasm.bytes > self.max_wasm_bytes {
            return kind_of(PluginError::new(
                &plugin_label,
                PluginErrorKind::TooLarge {
                    size: wasm.bytes,
                    cap: self.max_wasm_bytes,
                },
            ));
        }
        let read = |key: String| {
            self.registry
                .get(&key)
                .map_err(|e| match retry_or_refuse(e) {
                    Ok(why) => Fetched::Retry(why),
                    Err(reason) => Fetched::Refused("io", reason),
                })
        };
        let text = match read(layout::toml_key(name, version)) {
            Ok(b) => b,
            Err(f) => return f,
        };
        let bad_manifest = |m: String| {
            kind_of(PluginError::new(
                &plugin_label,
                PluginErrorKind::BadManifest(m),
            ))
        };
        let manifest = match std::str::from_utf8(&text)
            .map_err(|_| "not UTF-8".to_string())
            .and_then(|t| PluginDescriptor::parse(t).map_err(|e| e.to_string()))
        {
            Ok(m) => m,
            Err(e) => return bad_manifest(e),
        };
        if manifest.name != name || manifest.version != *version {
            return bad_manifest(format!(
                "it says {}@{} but lives at {name}/{version}/",
                manifest.name, manifest.version
            ));
        }
        let bytes = match read(layout::wasm_key(name, version)) {
            Ok(b) => b,
            Err(f) => return f,
        };
        // Digest first: nothing unverified reaches the compiler.
        if let Err(e) = verify_digest(&manifest, &bytes) {
            return kind_of(e);
        }
        let started = Instant::now();
        match self.host.load(spec_for(&manifest), &bytes) {
            Ok(plugin) => {
                tracing::debug!(
                    plugin = %plugin_label,
                    cached = plugin.from_cache(),
                    ms = started.elapsed().as_secs_f64() * 1e3,
                    "registry plugin compiled"
                );
                Fetched::Loaded(plugin, Box::new(manifest))
            }
            Err(e) => kind_of(e),
        }
    }
}

/// A read failure: `Ok(why)` to retry at the next poll (a passing error, or the object was
/// deleted meanwhile and the next listing will say so), `Err(reason)` to refuse.
fn retry_or_refuse(e: RegistryError) -> Result<String, String> {
    match &e {
        RegistryError::Storage {
            source: StorageError::NotFound(_),
            ..
        } => Ok(format!("{e} (deleted meanwhile?)")),
        RegistryError::Storage { source, .. }
            if source.class() == crate::error::ErrorClass::Transient =>
        {
            Ok(e.to_string())
        }
        _ => Err(e.to_string()),
    }
}

/// A listing's versions: their `plugin.wasm` and `plugin.toml` objects.
type Listed = BTreeMap<(String, Version), (Option<ObjectInfo>, Option<ObjectInfo>)>;
/// A listing's channel files.
type ListedChannels = BTreeMap<(String, String), ObjectInfo>;

/// Polls the registry (and the local plugins' files) on its own thread, swapping each changed
/// catalog into a [`LiveCatalog`], until its token is cancelled (or it is dropped).
#[derive(Debug)]
pub struct Watcher {
    stop: CancellationToken,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Watcher {
    /// Start polling the registry every `every` (`syncer`, if any) and the local plugins every
    /// [`reload::EVERY`] (`local`, if any) until `stop` is cancelled.
    pub fn start(
        syncer: Option<Syncer>,
        local: Option<LocalPlugins>,
        live: Arc<LiveCatalog>,
        every: Duration,
        stop: CancellationToken,
    ) -> std::io::Result<Watcher> {
        // Its own child: dropping the watcher stops it alone.
        let stop = stop.child_token();
        let token = stop.clone();
        let tick = if local.is_some() {
            every.min(reload::EVERY)
        } else {
            every
        };
        std::thread::Builder::new()
            .name("plugin-registry".into())
            .spawn(move || {
                let mut poll = Poll {
                    syncer,
                    local,
                    live,
                    every,
                    failing: false,
                    synced: Instant::now(),
                };
                while !park_or_cancelled(&token, tick) {
                    poll.once();
                }
            })?;
        Ok(Watcher { stop })
    }
}

/// The poller's state.
struct Poll {
    syncer: Option<Syncer>,
    local: Option<LocalPlugins>,
    live: Arc<LiveCatalog>,
    every: Duration,
    failing: bool,
    synced: Instant,
}

impl Poll {
    fn once(&mut self) {
        if let Some(base) = self
            .local
            .as_mut()
            .and_then(LocalPlugins::reload_if_changed)
        {
            match self.syncer.as_mut() {
                Some(s) => {
                    s.set_base(base);
                    self.live.replace(s.catalog());
                }
                None => self.live.replace(base),
            }
        }
        let Some(syncer) = self.syncer.as_mut() else {
            return;
        };
        if self.synced.elapsed() < self.every {
            return;
        }
        self.synced = Instant::now();
        let started = Instant::now();
        match syncer.sync() {
            Ok(changes) => {
                if self.failing {
                    tracing::info!("registry: reachable again");
                    self.failing = false;
                }
                if !changes.is_empty() {
                    self.live.replace(syncer.catalog());
                    let ms = started.elapsed().as_secs_f64() * 1e3;
                    for c in &changes {
                        c.log(ms);
                    }
                }
            }
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::warn!(
                    "registry: {e}; keeping the plugins loaded, retrying every {} s",
                    self.every.as_secs()
                );
            }
            Err(e) => tracing::debug!("registry: still failing: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VersionPin;
    use crate::plugin::registry::Location;
    use crate::plugin::{HostConfig, bundled};
    use std::path::Path;

    fn put(root: &Path, key: &str, data: &[u8]) {
        let path = root.join(key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, data).expect("write");
    }

    fn toml(name: &str, version: &str, world: &str, wasm: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        format!(
            "name = \"{name}\"\nversion = \"{version}\"\nworld = \"{world}\"\nsha256 = \"sha256:{}\"\n",
            hex::encode(sha2::Sha256::digest(wasm))
        )
        .into_bytes()
    }

    fn req(s: &str) -> semver::VersionReq {
        semver::VersionReq::parse(s).expect("req")
    }

    #[test]
    fn follows_the_registry_and_refuses_what_does_not_verify() -> Result<(), RegistryError> {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("registry");
        let host = Arc::new(
            PluginHost::new(&HostConfig {
                cache_dir: Some(tmp.path().join("cache")),
                ..HostConfig::default()
            })
            .expect("host"),
        );
        let exif = bundled::get("exif").expect("exif").wasm;
        let watermark = bundled::get("watermark").expect("watermark").wasm;
        let base = Catalog::bundled(&host).expect("bundled");
        let registry = Registry::open(Location::Dir(root.clone()), false)?;
        let mut s = Syncer::new(registry, host, base, 64 << 20);
        assert!(
            s.sync()?.is_empty(),
            "a missing directory is an empty registry"
        );
        assert!(!root.exists(), "reading a registry never creates it");

        put(&root, "exif/1.1.0/plugin.wasm", exif);
        put(
            &root,
            "exif/1.1.0/plugin.toml",
            &toml("exif", "1.1.0", "metadata-extractor", exif),
        );
        // Not committed yet (no plugin.toml), and strays: ignored.
        put(&root, "exif/1.2.0/plugin.wasm", exif);
        put(&root, "README.md", b"hello");
        put(&root, "Bad/1.0.0/plugin.toml", b"x");
        let changes = s.sync()?;
        assert!(
            matches!(&changes[..], [Change::Added { plugin, .. }] if plugin == "exif@1.1.0"),
            "{changes:?}"
        );
        let catalog = s.catalog();
        assert_eq!(
            catalog.resolve("exif", &req("^1")).map(|p| p.version()),
            Some("1.1.0")
        );
        assert_eq!(
            catalog.resolve("exif", &req("=1.0.0")).map(|p| p.version()),
            Some("1.0.0")
        );
        assert!(s.sync()?.is_empty(), "nothing changed, nothing fetched");

        put(&root, "exif/channels/stable", b"1.0.0\n");
        let changes = s.sync()?;
        assert_eq!(
            changes,
            [Change::Channel {
                name: "exif".into(),
                channel: "stable".into(),
                from: None,
                to: Some(semver::Version::new(1, 0, 0)),
                loaded: true,
            }]
        );
        let stable = VersionPin::Channel("stable".into());
        assert_eq!(
            s.catalog()
                .resolve_pin("exif", &stable)
                .map(|p| p.version()),
            Some("1.0.0"),
            "a channel may name the bundled version"
        );

        // Shadowing the bundled version, a wrong world, a tampered wasm, a mislabelled toml.
        put(&root, "exif/1.0.0/plugin.wasm", exif);
        put(
            &root,
            "exif/1.0.0/plugin.toml",
            &toml("exif", "1.0.0", "metadata-extractor", exif),
        );
        put(&root, "liar/1.0.0/plugin.wasm", watermark);
        put(
            &root,
            "liar/1.0.0/plugin.toml",
            &toml("liar", "1.0.0", "metadata-extractor", watermark),
        );
        put(&root, "tamper/1.0.0/plugin.wasm", exif);
        put(
            &root,
            "tamper/1.0.0/plugin.toml",
            &toml("tamper", "1.0.0", "metadata-extractor", watermark),
        );
        put(&root, "moved/1.0.0/plugin.wasm", exif);
        put(
            &root,
            "moved/1.0.0/plugin.toml",
            &toml("other", "1.0.0", "metadata-extractor", exif),
        );
        assert!(s.sync()?.is_empty(), "refusals change nothing new jobs get");
        let codes: Vec<(String, &str)> = s
            .versions()
            .filter_map(|(n, v, st)| match st {
                VersionState::Refused { code, .. } => Some((format!("{n}@{v}"), *code)),
                VersionState::Loaded { .. } => None,
            })
            .collect();
        assert_eq!(
            codes,
            [
                ("exif@1.0.0".to_string(), "shadowed"),
                ("liar@1.0.0".to_string(), "wrong_world"),
                ("moved@1.0.0".to_string(), "bad_manifest"),
                ("tamper@1.0.0".to_string(), "digest_mismatch"),
            ]
        );
        assert!(
            s.catalog().resolve("liar", &req("*")).is_none(),
            "never half-loaded"
        );

        // Deleted: gone for new jobs; the channel now names a version that is not loaded.
        std::fs::remove_file(root.join("exif/1.1.0/plugin.toml")).expect("rm");
        put(&root, "exif/channels/stable", b"1.1.0");
        let changes = s.sync()?;
        assert!(
            changes.contains(&Change::Removed {
                plugin: "exif@1.1.0".into(),
                why: "deleted from the registry".into()
            }),
            "{changes:?}"
        );
        assert!(
            changes
                .iter()
                .any(|c| matches!(c, Change::Channel { loaded: false, .. })
                    && c.to_string().contains("not loaded")),
            "{changes:?}"
        );
        let catalog = s.catalog();
        assert_eq!(
            catalog.resolve("exif", &req("^1")).map(|p| p.version()),
            Some("1.0.0")
        );
        assert!(catalog.resolve_pin("exif", &stable).is_none());
        Ok(())
    }
}
