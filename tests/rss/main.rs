//! Memory stability under repeated traps, alone in its own test process so the resident set it
//! measures is its own: 1,000 trapping calls must grow RSS by less than 10%.

use mediaflow::plugin::{PluginErrorKind, PluginSpec, SourceHandle, types};
use mediaflow_tests::{guest, host, programs, rss_kib};

fn info() -> types::MediaInfo {
    types::MediaInfo::image("file:///trap.jpg", "jpeg", 1, 1, 4)
}

#[test]
fn a_thousand_trapping_calls_grow_rss_by_under_ten_percent() {
    let (host, _dir) = host();
    let plugin = guest(&host, programs::PANIC, PluginSpec::new("panicky", "0.1.0")).expect("load");
    let source = SourceHandle::from_bytes(vec![0u8; 4]);
    let trap = |n: usize| {
        for _ in 0..n {
            let err = plugin.extract(&info(), &source).expect_err("traps");
            assert!(matches!(err.kind, PluginErrorKind::Trap { .. }), "{err}");
        }
    };
    // Warm up: pool slots, code, allocator arenas.
    trap(100);
    let before = rss_kib();
    trap(1_000);
    let after = rss_kib();
    let growth = (after as f64 - before as f64) / before as f64;
    println!(
        "RSS before {before} KiB, after 1000 traps {after} KiB ({:+.2}%)",
        growth * 100.0
    );
    assert!(before > 0, "could read VmRSS");
    assert!(
        growth < 0.10,
        "RSS grew {:.1}% ({before} → {after} KiB)",
        growth * 100.0
    );
}
