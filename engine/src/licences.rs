//! What native code the `mediaflow` binary contains and under which licences — printed by
//! `mediaflow licenses`, checked by the tests (nothing GPL may be linked: the project is
//! Apache-2.0). FFmpeg reports its own build's licence and configuration at run time, so
//! the answer comes from the code that runs, not from a list that could drift.

use crate::media::decoder::ffmpeg;

/// One native library in the binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// Its name.
    pub name: &'static str,
    /// Version.
    pub version: String,
    /// Licence.
    pub licence: String,
    /// How it gets into the binary.
    pub linked: &'static str,
}

/// Every native library, FFmpeg's as its build reports them.
pub fn libraries() -> Vec<Library> {
    let mut out: Vec<Library> = ffmpeg::libraries()
        .into_iter()
        .map(|(name, version, licence)| Library {
            name,
            version,
            licence,
            linked: "static, built from source (engine/ffmpeg-sys)",
        })
        .collect();
    let fixed = [
        (
            "libdav1d",
            "system (Debian libdav1d6)",
            "BSD-2-Clause",
            "dynamic",
        ),
        (
            "SVT-AV1",
            "system (Debian libsvtav1enc1)",
            "BSD-2-Clause-Patent",
            "dynamic",
        ),
        (
            "OpenH264",
            "2.7",
            "BSD-2-Clause",
            "static, built from source (openh264-sys2 crate)",
        ),
        (
            "libjpeg-turbo",
            "3",
            "IJG, BSD-3-Clause, Zlib",
            "static, built from source (turbojpeg crate)",
        ),
        (
            "libwebp",
            "1",
            "BSD-3-Clause",
            "static, built from source (libwebp-sys crate)",
        ),
        (
            "SQLite",
            "3",
            "public domain",
            "static, built from source (rusqlite bundled)",
        ),
        (
            "AWS-LC",
            "1",
            "Apache-2.0 AND ISC AND OpenSSL",
            "static (aws-lc-rs, TLS)",
        ),
        ("mimalloc", "2", "MIT", "static (mimalloc crate)"),
        ("zlib", "system", "Zlib", "dynamic"),
    ];
    out.extend(fixed.map(|(name, version, licence, linked)| Library {
        name,
        version: version.into(),
        licence: licence.into(),
        linked,
    }));
    out
}

/// FFmpeg's configure line (it shows no `--enable-gpl`, no `--enable-nonfree`).
pub fn ffmpeg_configuration() -> String {
    ffmpeg::configuration()
}
