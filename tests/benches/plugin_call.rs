//! Plugin host overheads for the `exif` plugin on a small JPEG with EXIF:
//! cold compile, load from the on-disk cache, instantiate, instantiate + call, and a call on a
//! reused instance — p50/p99 over many runs, CPU time beside wall time.
//!
//! ```sh
//! cargo bench -p mediaflow-tests --bench plugin_call
//! ```

use mediaflow::plugin::{HostConfig, PluginHost, PluginSpec, SourceHandle, bundled, types};
use mediaflow_tests::{CANON, exif_block, jpeg_with_exif, photo_like};
use std::time::{Duration, Instant};

fn cpu_time() -> Duration {
    // CPU time of this (the benchmarking) thread in ns: first field of /proc/thread-self/schedstat.
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(
        text.split_whitespace()
            .next()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0),
    )
}

fn stats(name: &str, mut samples: Vec<Duration>, cpu: Duration) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let wall: Duration = samples.iter().sum();
    println!(
        "{name:<34} n={:<6} p50 {:>9.1} µs  p99 {:>9.1} µs  max {:>9.1} µs   wall {:>7.3} s  cpu {:>7.3} s",
        samples.len(),
        us(pct(0.5)),
        us(pct(0.99)),
        us(pct(1.0)),
        wall.as_secs_f64(),
        cpu.as_secs_f64()
    );
}

fn measure(name: &str, n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..n / 10 {
        f();
    }
    let cpu0 = cpu_time();
    let samples: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    stats(name, samples.clone(), cpu_time() - cpu0);
    samples
}

fn main() {
    let exif = bundled::get("exif").expect("bundled exif");
    let spec = || {
        let mut s = PluginSpec::new("exif", exif.manifest.version.to_string());
        s.config = exif.manifest.config_strings();
        s
    };
    let jpeg = jpeg_with_exif(&photo_like(64, 48), &exif_block(&CANON));
    let info = types::MediaInfo::image("file:///bench.jpg", "jpeg", 64, 48, jpeg.len() as u64);
    let source = SourceHandle::from_bytes(jpeg.clone());
    println!(
        "exif plugin: {} bytes of wasm; input JPEG {} bytes\n",
        exif.wasm.len(),
        jpeg.len()
    );

    // Cold compile: a fresh host with no cache each time.
    let nocache = PluginHost::new(&HostConfig {
        cache_dir: None,
        ..HostConfig::default()
    })
    .expect("host");
    measure("cold compile (no cache)", 10, || {
        nocache.load(spec(), exif.wasm).expect("load");
    });

    // Load from the on-disk cache (mmap of the compiled artifact).
    let dir = tempfile::tempdir().expect("tmp");
    let config = HostConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..HostConfig::default()
    };
    let host = PluginHost::new(&config).expect("host");
    host.load(spec(), exif.wasm).expect("prime cache");
    measure("load from disk cache", 200, || {
        let p = host.load(spec(), exif.wasm).expect("load");
        assert!(p.from_cache());
    });

    let plugin = host.load(spec(), exif.wasm).expect("load");
    let instantiate = measure("instantiate (fresh Store)", 5_000, || {
        drop(plugin.instantiate().expect("instantiate"));
    });
    let full = measure("instantiate + extract (fresh)", 5_000, || {
        let entries = plugin
            .instantiate()
            .expect("instantiate")
            .extract(&info, &source)
            .expect("extract");
        assert!(entries.len() >= 7, "{} entries", entries.len());
    });
    let mut instance = plugin.instantiate().expect("instantiate");
    let reused = measure("extract on a reused instance", 5_000, || {
        instance.extract(&info, &source).expect("extract");
    });
    let p50 = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let p99 = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() * 99 / 100]
    };
    println!(
        "\nhost overhead per fresh-instance call (instantiate + call − work of a reused call): p50 {:.1} µs, p99 {:.1} µs (goal p50 ≤ 20 µs, p99 ≤ 100 µs)",
        (p50(full.clone()).as_secs_f64() - p50(reused.clone()).as_secs_f64()) * 1e6,
        (p99(full).as_secs_f64() - p50(reused).as_secs_f64()) * 1e6,
    );
    println!(
        "instantiate alone: p50 {:.1} µs, p99 {:.1} µs",
        p50(instantiate.clone()).as_secs_f64() * 1e6,
        p99(instantiate).as_secs_f64() * 1e6
    );
}
