//! Write [mediaflow] plugins in Rust.
//!
//! A mediaflow plugin is a WebAssembly component that implements one of three worlds of the
//! `mediaflow:plugin` WIT package: a **metadata extractor**, a **watermarker** or a
//! **notification rule**. With this crate a plugin is one function under an attribute:
//!
//! ```no_run
//! use mediaflow_plugin_sdk::{MediaInfo, MetadataEntry, PluginError, Source};
//!
//! #[mediaflow_plugin_sdk::metadata_extractor]
//! fn extract(info: MediaInfo, src: &Source) -> Result<Vec<MetadataEntry>, PluginError> {
//!     let head = src.read(0, 4).map_err(|e| PluginError::Failed(format!("{e:?}")))?;
//!     Ok(vec![
//!         MetadataEntry::text("file.magic", hex(&head)),
//!         MetadataEntry::integer("file.bytes", info.bytes as i64),
//!     ])
//! }
//! # fn hex(b: &[u8]) -> String { b.iter().map(|x| format!("{x:02x}")).collect() }
//! # fn main() {}
//! ```
//!
//! # Quick start
//!
//! ```text
//! mediaflow plugin new metadata-extractor my-plugin   # scaffolds a crate that builds as-is
//! cd my-plugin
//! cargo build --release --target wasm32-wasip2
//! mediaflow plugin validate target/wasm32-wasip2/release/my_plugin.wasm
//! ```
//!
//! The three attributes are [`metadata_extractor`], [`watermarker`] and
//! [`notification_rule`]; each checks the function's signature and generates the component's
//! exports. Inside a plugin, [`log`] writes to the engine's log, [`config`] reads the
//! plugin's configuration and [`time_left`] says how long the current call may still run. Everything else a plugin needs — reading the source, returning
//! typed metadata, an overlay or notifications — is in the types re-exported here.
//!
//! Plugins run sandboxed: no files, no network, no environment, a memory cap and a time limit
//! per call. Expected failures are returned as [`PluginError`]; a panic becomes a trap the
//! engine reports with the plugin's name and version.

#![deny(missing_docs)]

mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        inline: "
            package mediaflow:sdk;
            world sdk {
                import mediaflow:plugin/types@0.1.1;
                import mediaflow:plugin/host@0.1.1;
                import mediaflow:plugin/input@0.1.1;
            }
        ",
        path: "../wit",
        world: "mediaflow:sdk/sdk",
        generate_all,
    });
}

mod reader;

pub use bindings::mediaflow::plugin::input::{ReadError, Source};
pub use bindings::mediaflow::plugin::types::{
    GpsPosition, JobError, JobEvent, JobOutput, JobStatus, MediaInfo, MediaKind, MetadataEntry,
    MetadataValue, Notification, Overlay, PluginError, PluginMetadata, PluginUse, Rational,
    RgbaImage, Size, Tiling, Timestamp, Timing,
};
pub use mediaflow_plugin_sdk_macro::{metadata_extractor, notification_rule, watermarker};
pub use reader::SourceReader;

/// The WIT package version this SDK builds plugins against. They run on engines hosting this
/// version (mediaflow lists them in `HOSTED_WIT_VERSIONS`).
pub const WIT_VERSION: &str = "0.1.1";

/// Time left before the current call reaches its wall-time limit (the plugin's `timeout_ms`).
/// Check it in open-ended work (scanning a long video, hashing a large file) and return what
/// you have rather than be interrupted. Since WIT 0.1.1.
pub fn time_left() -> std::time::Duration {
    std::time::Duration::from_millis(crate::bindings::mediaflow::plugin::host::time_left_ms())
}

/// Generated modules the attribute macros refer to. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::mediaflow::plugin::{host, input, types};
    pub use wit_bindgen;
}

/// The engine's log, tagged with this plugin's name and version.
///
/// Use the macros: `mediaflow_plugin_sdk::info!("read {} bytes", n)`.
pub mod log {
    pub use crate::bindings::mediaflow::plugin::host::LogLevel as Level;

    /// Write `message` at `level`.
    pub fn write(level: Level, message: &str) {
        crate::bindings::mediaflow::plugin::host::log(level, message);
    }
}

/// Log at debug level, `format!` style.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, &format!($($arg)*)) };
}
/// Log at info level, `format!` style.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, &format!($($arg)*)) };
}
/// Log at warn level, `format!` style.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warn, &format!($($arg)*)) };
}
/// Log at error level, `format!` style.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, &format!($($arg)*)) };
}

/// This plugin's configuration: the profile's `config` table for it, over the defaults in its
/// `plugin.toml`. Non-string TOML values arrive as TOML text (`42`, `true`, `[1, 2]`).
pub mod config {
    use crate::PluginError;
    use std::str::FromStr;

    /// The value of `key`, if set.
    pub fn get(key: &str) -> Option<String> {
        crate::bindings::mediaflow::plugin::host::config(key)
    }

    /// The value of `key`, or `default`.
    pub fn get_or(key: &str, default: &str) -> String {
        get(key).unwrap_or_else(|| default.to_string())
    }

    /// Every key this plugin was given.
    pub fn keys() -> Vec<String> {
        crate::bindings::mediaflow::plugin::host::config_keys()
    }

    /// `key` parsed as `T` (surrounding quotes of a TOML string are removed), `None` if unset,
    /// a [`PluginError::BadConfig`] naming the key if it does not parse.
    pub fn parse<T: FromStr>(key: &str) -> Result<Option<T>, PluginError>
    where
        T::Err: std::fmt::Display,
    {
        match get(key) {
            None => Ok(None),
            Some(raw) => {
                let text = raw.trim().trim_matches('"');
                text.parse::<T>().map(Some).map_err(|e| {
                    PluginError::BadConfig(format!("config key `{key}` = {raw:?}: {e}"))
                })
            }
        }
    }
}

impl MetadataEntry {
    /// A text entry.
    pub fn text(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: MetadataValue::Text(value.into()),
        }
    }
    /// An integer entry.
    pub fn integer(key: impl Into<String>, value: i64) -> Self {
        Self {
            key: key.into(),
            value: MetadataValue::Integer(value),
        }
    }
    /// A floating-point entry.
    pub fn float(key: impl Into<String>, value: f64) -> Self {
        Self {
            key: key.into(),
            value: MetadataValue::Float(value),
        }
    }
    /// A boolean entry.
    pub fn boolean(key: impl Into<String>, value: bool) -> Self {
        Self {
            key: key.into(),
            value: MetadataValue::Boolean(value),
        }
    }
    /// An exact fraction.
    pub fn rational(key: impl Into<String>, numerator: i64, denominator: i64) -> Self {
        Self {
            key: key.into(),
            value: MetadataValue::Rational(Rational {
                numerator,
                denominator,
            }),
        }
    }
    /// A point in time.
    pub fn timestamp(key: impl Into<String>, value: Timestamp) -> Self {
        Self {
            key: key.into(),
            value: MetadataValue::Timestamp(value),
        }
    }
    /// A GPS position.
    pub fn gps(key: impl Into<String>, value: GpsPosition) -> Self {
        Self {
            key: key.into(),
            value: MetadataValue::Gps(value),
        }
    }
}

impl From<ReadError> for PluginError {
    fn from(e: ReadError) -> Self {
        PluginError::Failed(match e {
            ReadError::OutOfRange => "read past the end of the source".to_string(),
            ReadError::Io(m) => format!("source read failed: {m}"),
        })
    }
}

impl RgbaImage {
    /// A transparent image of `width` × `height`.
    pub fn transparent(width: u32, height: u32) -> Self {
        let len = (width as usize) * (height as usize) * 4;
        Self {
            width,
            height,
            pixels: vec![0; len],
        }
    }
}

impl Timestamp {
    /// A wall-clock date and time with no known zone (as most EXIF dates are).
    /// `None` when a field is out of range.
    pub fn from_civil(
        year: i32,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
    ) -> Option<Self> {
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
            return None;
        }
        if second > 60 {
            return None;
        }
        // Days from civil (Howard Hinnant's algorithm), proleptic Gregorian calendar.
        let y = i64::from(year) - i64::from(month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let seconds =
            days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
        Some(Self {
            seconds,
            nanoseconds: 0,
            utc_offset_minutes: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wit_version_is_the_contract_the_sdk_is_built_from() {
        let wit = include_str!("../../wit/plugin.wit");
        assert!(wit.contains(&format!("package mediaflow:plugin@{WIT_VERSION};")));
    }

    #[test]
    fn civil_dates_convert_to_unix_seconds() {
        let t = Timestamp::from_civil(2024, 2, 29, 13, 45, 10).expect("valid date");
        assert_eq!(t.seconds, 1_709_214_310);
        assert_eq!(
            Timestamp::from_civil(1970, 1, 1, 0, 0, 0).map(|t| t.seconds),
            Some(0)
        );
        assert!(Timestamp::from_civil(2024, 13, 1, 0, 0, 0).is_none());
    }
}
