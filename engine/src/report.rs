//! `index.html`: a visual report of a `process` run — each source with its renditions as
//! images, the metadata plugins found, plugin timings, and errors in plain words.

use crate::manifest::{Manifest, Output, Status};
use std::fmt::Write as _;

/// One processed source for the report: its output folder (relative to the report) and manifest.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The source file name as given.
    pub name: String,
    /// Folder of its outputs, relative to `index.html`.
    pub dir: String,
    /// Its manifest.
    pub manifest: &'a Manifest,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A sentence a person can act on, for an error code.
pub fn plain_words(code: &str) -> &'static str {
    match code {
        "corrupt_input" => "The file is damaged or incomplete, so it could not be read.",
        "unsupported_format" => "This is not a kind of file mediaflow can read.",
        "unsupported_codec" => "The file uses an encoding mediaflow does not support.",
        "limit_exceeded" => "The file is larger than this engine is configured to accept.",
        "plugin_failed" => "A plugin failed while working on this file.",
        "plugin_not_found" => "The profile asks for a plugin this engine does not have.",
        "encode_failed" => "Writing an output image failed.",
        "storage" => "Reading or writing storage failed.",
        _ => "The job failed.",
    }
}

/// One source's section: status, media, error, outputs, metadata, plugins, notes, timings.
fn section(h: &mut String, e: &Entry<'_>) {
    let m = e.manifest;
    let status = match m.status {
        Status::Succeeded => "succeeded",
        Status::Failed => "failed",
    };
    let _ = write!(
        h,
        r#"<section class="{status}"><h2>{} <span class="badge">{status}</span></h2>"#,
        esc(&e.name)
    );
    if let Some(media) = &m.source.media {
        let _ = write!(
            h,
            r#"<div class="muted">{} {}×{}, {} bytes, profile <b>{}</b>{}</div>"#,
            esc(&media.format),
            media.width,
            media.height,
            m.source.bytes,
            esc(&m.profile),
            if media.frames > 1 {
                format!(", {} frames", media.frames)
            } else {
                String::new()
            }
        );
    }
    if let Some(err) = &m.error {
        let _ = write!(
            h,
            r#"<p class="err"><b>{}</b><br>{} <span class="muted">(code <code>{}</code>, {:?})</span></p>"#,
            plain_words(&err.code),
            esc(&err.message),
            esc(&err.code),
            err.class
        );
    }
    outputs(h, e);
    for (plugin, entries) in &m.metadata {
        if entries.is_empty() {
            continue;
        }
        let _ = write!(
            h,
            "<table><tr><th colspan=2>metadata from <b>{}</b></th></tr>",
            esc(plugin)
        );
        for (k, v) in entries {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(&v));
        }
        h.push_str("</table>");
    }
    if !m.plugins.is_empty() {
        h.push_str("<table><tr><th>plugin</th><th>version</th><th>world</th><th>time</th></tr>");
        for p in &m.plugins {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2} ms</td></tr>",
                esc(&p.name),
                esc(&p.version),
                esc(&p.world),
                p.duration_ms
            );
        }
        h.push_str("</table>");
    }
    for n in &m.notes {
        let _ = write!(h, r#"<p class="muted">Note: {}</p>"#, esc(n));
    }
    let timings: Vec<String> = m
        .timings_ms
        .iter()
        .map(|(k, v)| format!("{k} {v:.1} ms"))
        .collect();
    let _ = write!(
        h,
        r#"<p class="muted">{} · <a href="{}/manifest.json">manifest.json</a></p></section>"#,
        esc(&timings.join(" · ")),
        esc(&e.dir)
    );
}

/// The outputs of a source, each shown as what it is (image, video, link). Rungs of one
/// picture size share a player whose sources list AV1 first: the browser plays the first it
/// can decode (`type` with the codec), so AV1 where it can and H.264 elsewhere.
fn outputs(h: &mut String, e: &Entry<'_>) {
    let m = e.manifest;
    if m.outputs.is_empty() {
        return;
    }
    h.push_str(r#"<div class="renditions">"#);
    let mut players: Vec<Vec<&Output>> = Vec::new();
    for o in &m.outputs {
        // HLS media playlists and segments are reached through the master playlist.
        if o.name.starts_with("hls/") {
            continue;
        }
        if (o.kind.as_str(), o.format.as_str()) == ("video", "mp4") {
            match players.iter_mut().find(|p| {
                p.first()
                    .is_some_and(|f| (f.width, f.height) == (o.width, o.height))
            }) {
                Some(p) => p.push(o),
                None => players.push(vec![o]),
            }
            continue;
        }
        let file = file_of(o);
        let view = match o.kind.as_str() {
            "playlist" | "vtt" => format!(
                r#"<a href="{dir}/{file}">{file}</a>"#,
                dir = esc(&e.dir),
                file = esc(file)
            ),
            _ => format!(
                r#"<a href="{dir}/{file}"><img src="{dir}/{file}" alt="{name}" loading="lazy"></a>"#,
                dir = esc(&e.dir),
                file = esc(file),
                name = esc(&o.name)
            ),
        };
        let _ = write!(
            h,
            r#"<figure>{view}<figcaption>{}</figcaption></figure>"#,
            caption(o)
        );
    }
    for mut rungs in players {
        rungs.sort_by_key(|o| !o.codec.as_deref().unwrap_or("").starts_with("av01"));
        let sources: String = rungs
            .iter()
            .map(|o| {
                let kind = match &o.codec {
                    Some(c) => format!("video/mp4; codecs=&quot;{}&quot;", esc(c)),
                    None => "video/mp4".into(),
                };
                format!(
                    r#"<source src="{}/{}" type="{kind}">"#,
                    esc(&e.dir),
                    esc(file_of(o))
                )
            })
            .collect();
        let captions: Vec<String> = rungs.iter().map(|o| caption(o)).collect();
        let _ = write!(
            h,
            r#"<figure><video controls preload="metadata" poster="{}/poster.jpg">{sources}</video><figcaption>{}</figcaption></figure>"#,
            esc(&e.dir),
            captions.join("<br>")
        );
    }
    h.push_str("</div>");
}

/// The file an output was written to, relative to its source's folder.
fn file_of(o: &Output) -> &str {
    match o.name.as_str() {
        "hls" => "hls/master.m3u8",
        _ => o.uri.rsplit('/').next().unwrap_or(""),
    }
}

/// `name: format (codec) W×H, KB`.
fn caption(o: &Output) -> String {
    let codec = o
        .codec
        .as_deref()
        .map(|c| format!(" ({})", esc(c)))
        .unwrap_or_default();
    format!(
        "{}: {}{codec} {}×{}, {:.1} KB",
        esc(&o.name),
        esc(&o.format),
        o.width,
        o.height,
        o.bytes as f64 / 1024.0
    )
}

/// Render the report.
pub fn render(entries: &[Entry<'_>]) -> String {
    let ok = entries
        .iter()
        .filter(|e| e.manifest.status == Status::Succeeded)
        .count();
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mediaflow report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font:15px/1.45 system-ui,sans-serif;margin:2rem;color:#1d2430;background:#f6f7f9}}
h1{{margin:0 0 .2rem}} .sum{{color:#555;margin-bottom:1.5rem}}
section{{background:#fff;border-radius:10px;padding:1rem 1.25rem;margin:0 0 1.25rem;box-shadow:0 1px 3px #0002}}
section.failed{{border-left:6px solid #c0392b}} section.succeeded{{border-left:6px solid #27ae60}}
.badge{{display:inline-block;padding:.1rem .5rem;border-radius:4px;font-size:.8rem;color:#fff}}
.succeeded .badge{{background:#27ae60}} .failed .badge{{background:#c0392b}}
.renditions{{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-end;margin:.75rem 0}}
figure{{margin:0}} figure video{{max-width:480px;max-height:320px}} figure img{{max-width:360px;max-height:280px;border:1px solid #ddd;background:
repeating-conic-gradient(#eee 0 25%,#fff 0 50%) 50%/16px 16px}} figcaption{{font-size:.8rem;color:#555}}
table{{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}} td,th{{border:1px solid #e2e4e8;padding:.2rem .5rem;text-align:left}}
.err{{background:#fdecea;padding:.6rem .8rem;border-radius:6px}} .muted{{color:#777;font-size:.85rem}}
</style></head><body><h1>mediaflow report</h1><div class="sum">{} sources: {} succeeded, {} failed</div>"#,
        entries.len(),
        ok,
        entries.len() - ok
    );
    for e in entries {
        section(&mut h, e);
    }
    h.push_str("</body></html>\n");
    h
}
