//! Shared helpers for mediaflow's integration tests: paths of the guest programs, a plugin
//! host with a private cache, generated media with known EXIF, and process measurements.

use mediaflow::plugin::{HostConfig, Plugin, PluginHost, PluginSpec, bundled};
use std::io::Cursor;

/// Paths of the guest programs built from `tests/programs/`.
pub mod programs {
    include!(concat!(env!("OUT_DIR"), "/programs.rs"));
}

/// A plugin host whose compile cache lives in its own temporary directory.
pub fn host() -> (PluginHost, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = PluginHost::new(&HostConfig {
        cache_dir: Some(dir.path().join("cache")),
        ..HostConfig::default()
    })
    .expect("plugin host");
    (host, dir)
}

/// Load a bundled first-party plugin with its default config plus `overrides`.
pub fn bundled_plugin(host: &PluginHost, name: &str, overrides: &[(&str, &str)]) -> Plugin {
    let p = bundled::get(name).unwrap_or_else(|| panic!("bundled plugin {name}"));
    let mut spec = PluginSpec::new(&p.manifest.name, p.manifest.version.to_string());
    spec.config = p.manifest.config_strings();
    for (k, v) in overrides {
        spec.config.insert((*k).to_string(), (*v).to_string());
    }
    spec.limits = p.manifest.limits;
    spec.expect = Some(p.manifest.world);
    host.load(spec, p.wasm)
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// Load a guest program from `tests/programs/` with `spec`.
pub fn guest(
    host: &PluginHost,
    path: &str,
    spec: PluginSpec,
) -> Result<Plugin, mediaflow::plugin::PluginError> {
    host.load_file(spec, std::path::Path::new(path))
}

/// EXIF facts written into generated test images.
pub struct ExifFacts {
    /// `Make`.
    pub make: &'static str,
    /// `Model`.
    pub model: &'static str,
    /// `DateTimeOriginal`.
    pub taken: &'static str,
    /// `OffsetTimeOriginal`.
    pub offset: &'static str,
    /// `Orientation`.
    pub orientation: u16,
    /// `ExposureTime` as a fraction.
    pub exposure: (u32, u32),
    /// `FNumber` as a fraction.
    pub f_number: (u32, u32),
    /// ISO.
    pub iso: u16,
    /// Latitude degrees north (negative = south) — written as D/M/S.
    pub lat: f64,
    /// Longitude degrees east (negative = west).
    pub lon: f64,
}

/// A typical camera's EXIF.
pub const CANON: ExifFacts = ExifFacts {
    make: "Canon",
    model: "Canon EOS R5",
    taken: "2024:06:01 14:30:05",
    offset: "+02:00",
    orientation: 6,
    exposure: (1, 250),
    f_number: (28, 10),
    iso: 400,
    lat: 48.858_222,
    lon: -2.294_5,
};

/// The raw EXIF (TIFF-structured) block for `f`.
pub fn exif_block(f: &ExifFacts) -> Vec<u8> {
    use exif::{Field, In, Rational, Tag, Value};
    let dms = |v: f64| {
        let v = v.abs();
        let d = v.floor();
        let m = ((v - d) * 60.0).floor();
        let s = ((v - d) * 60.0 - m) * 60.0;
        Value::Rational(vec![
            Rational {
                num: d as u32,
                denom: 1,
            },
            Rational {
                num: m as u32,
                denom: 1,
            },
            Rational {
                num: (s * 1000.0).round() as u32,
                denom: 1000,
            },
        ])
    };
    let ascii = |s: &str| Value::Ascii(vec![s.as_bytes().to_vec()]);
    let field = |tag, value| Field {
        tag,
        ifd_num: In::PRIMARY,
        value,
    };
    let fields = vec![
        field(Tag::Make, ascii(f.make)),
        field(Tag::Model, ascii(f.model)),
        field(Tag::Orientation, Value::Short(vec![f.orientation])),
        field(Tag::DateTimeOriginal, ascii(f.taken)),
        field(Tag::OffsetTimeOriginal, ascii(f.offset)),
        field(
            Tag::ExposureTime,
            Value::Rational(vec![Rational {
                num: f.exposure.0,
                denom: f.exposure.1,
            }]),
        ),
        field(
            Tag::FNumber,
            Value::Rational(vec![Rational {
                num: f.f_number.0,
                denom: f.f_number.1,
            }]),
        ),
        field(Tag::PhotographicSensitivity, Value::Short(vec![f.iso])),
        field(
            Tag::GPSLatitudeRef,
            ascii(if f.lat < 0.0 { "S" } else { "N" }),
        ),
        field(Tag::GPSLatitude, dms(f.lat)),
        field(
            Tag::GPSLongitudeRef,
            ascii(if f.lon < 0.0 { "W" } else { "E" }),
        ),
        field(Tag::GPSLongitude, dms(f.lon)),
    ];
    let mut w = exif::experimental::Writer::new();
    for f in &fields {
        w.push_field(f);
    }
    let mut out = Cursor::new(Vec::new());
    w.write(&mut out, false).expect("writing EXIF");
    out.into_inner()
}

/// A photo-like RGB image (smooth gradients plus deterministic noise, so it compresses like a
/// photo rather than a flat test card).
pub fn photo_like(width: u32, height: u32) -> image::RgbImage {
    let mut seed: u32 = 0x9E37_79B9;
    image::RgbImage::from_fn(width, height, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let n = (seed & 0x1F) as i32 - 16;
        let r = ((x * 255 / width.max(1)) as i32 + n).clamp(0, 255) as u8;
        let g = ((y * 255 / height.max(1)) as i32 + n).clamp(0, 255) as u8;
        let b = (((x + y) * 127 / (width + height).max(1)) as i32 + 64 + n).clamp(0, 255) as u8;
        image::Rgb([r, g, b])
    })
}

/// Encode `img` in `format`.
pub fn encode(img: &image::RgbImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img.clone())
        .write_to(&mut out, format)
        .expect("encoding test image");
    out.into_inner()
}

/// A JPEG with `exif` in an APP1 segment right after SOI.
pub fn jpeg_with_exif(img: &image::RgbImage, exif: &[u8]) -> Vec<u8> {
    let jpeg = encode(img, image::ImageFormat::Jpeg);
    let mut out = jpeg[..2].to_vec();
    let len = u16::try_from(exif.len() + 8).expect("EXIF fits a segment");
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(exif);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A PNG with an `eXIf` chunk after IHDR.
pub fn png_with_exif(img: &image::RgbImage, exif: &[u8]) -> Vec<u8> {
    let png = encode(img, image::ImageFormat::Png);
    let ihdr_end = 8 + 8 + 13 + 4;
    let mut out = png[..ihdr_end].to_vec();
    out.extend_from_slice(&(exif.len() as u32).to_be_bytes());
    let mut body = b"eXIf".to_vec();
    body.extend_from_slice(exif);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out.extend_from_slice(&png[ihdr_end..]);
    out
}

/// An extended-format WebP (VP8X) with an `EXIF` chunk.
pub fn webp_with_exif(img: &image::RgbImage, exif: &[u8]) -> Vec<u8> {
    let simple = encode(img, image::ImageFormat::WebP);
    let image_chunk = &simple[12..];
    let mut vp8x = b"VP8X".to_vec();
    vp8x.extend_from_slice(&10u32.to_le_bytes());
    vp8x.push(0x08); // EXIF flag
    vp8x.extend_from_slice(&[0, 0, 0]);
    vp8x.extend_from_slice(&(img.width() - 1).to_le_bytes()[..3]);
    vp8x.extend_from_slice(&(img.height() - 1).to_le_bytes()[..3]);
    let mut exif_chunk = b"EXIF".to_vec();
    exif_chunk.extend_from_slice(&(exif.len() as u32).to_le_bytes());
    exif_chunk.extend_from_slice(exif);
    if exif.len() % 2 == 1 {
        exif_chunk.push(0);
    }
    let body_len = 4 + vp8x.len() + image_chunk.len() + exif_chunk.len();
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(b"WEBP");
    out.extend_from_slice(&vp8x);
    out.extend_from_slice(image_chunk);
    out.extend_from_slice(&exif_chunk);
    out
}

/// CRC-32 (IEEE), as PNG chunks use.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Resident set size of this process, in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// A real S3/SQS endpoint for tests: moto's server (PyPI `moto[server]`, installed by
/// `.ci/setup`) on 127.0.0.1 and a free port, stopped when dropped.
pub struct Moto {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Start moto and wait until it answers.
    pub fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        Self::start_on(port)
    }

    /// Start moto on `port` (e.g. again where a stopped one was: it keeps no state across
    /// restarts) and wait until it answers.
    pub fn start_on(port: u16) -> Moto {
        // `python3 -m moto.server` rather than the `moto_server` script: no PATH/shim surprises.
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 with moto[server] (bash .ci/setup installs it)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "moto_server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Moto { child, endpoint }
    }

    /// The environment that points the AWS SDK (and so the engine) at this endpoint.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// The SDK configuration for this endpoint (fixed test credentials, `us-east-1`).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let creds = aws_sdk_s3::config::Credentials::new("test", "test", None, None, "moto");
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(creds)
            .load()
            .await
    }

    /// S3 (path-style) and SQS clients for this endpoint.
    pub async fn clients(&self) -> (aws_sdk_s3::Client, aws_sdk_sqs::Client) {
        let shared = self.sdk_config().await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&shared)
                .force_path_style(true)
                .build(),
        );
        (s3, aws_sdk_sqs::Client::new(&shared))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
