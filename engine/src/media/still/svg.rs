//! SVG, rasterised safely with `resvg`. Nothing outside the file is ever read: `<image>`
//! references (files, URLs, even `data:` URLs) resolve to nothing, external entities are never
//! fetched, and there are no scripts, fonts or network in the renderer at all. Before `usvg`
//! builds its tree the document is bounded: its size in bytes, its node count, its nesting
//! depth, what its entities can expand to (billion laughs) and what its `<use>` elements
//! expand to (a `<use>` of a group of `<use>`s…). The picture is drawn once, at the size the
//! largest rendition needs (within `max_pixels`), so a small logo makes sharp large renditions
//! when `upscale` asks for them and a huge declared canvas costs nothing extra. Text is not
//! drawn (the engine carries no fonts); convert text to paths.

use crate::config::Limits;
use crate::error::JobError;
use crate::media::Pixels;
use crate::media::decode::Decoded;
use crate::media::probe::Probe;
use resvg::usvg::{self, roxmltree};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Largest SVG file read (a drawing, not a data store).
pub const MAX_SVG_BYTES: u64 = 16 << 20;
/// Most XML nodes in the document.
pub const MAX_NODES: u32 = 500_000;
/// Most elements once every `<use>` is expanded.
pub const MAX_EXPANDED_ELEMENTS: u64 = 1_000_000;
/// Deepest element nesting (counting through `<use>`): `usvg` recurses per level.
pub const MAX_DEPTH: u32 = 256;
/// Most text entity references may expand to.
pub const MAX_ENTITY_EXPANSION: u64 = 16 << 20;

fn limit(what: &'static str, found: u64, max: u64) -> JobError {
    JobError::limit(what, found, max)
}

fn corrupt(msg: impl Into<String>) -> JobError {
    JobError::CorruptInput(msg.into())
}

/// Whether `m` (the first bytes of a file) looks like an SVG document: XML (after an optional
/// byte-order mark and white space) with an `<svg` element among its first bytes.
pub fn sniff(m: &[u8]) -> bool {
    let t = m.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(m);
    let start = t
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(t.len());
    t[start..].starts_with(b"<") && t.windows(4).any(|w| w == b"<svg")
}

fn read_all<R: Read + Seek>(r: &mut R, bytes: u64) -> Result<Vec<u8>, JobError> {
    if bytes > MAX_SVG_BYTES {
        return Err(limit("max_svg_bytes", bytes, MAX_SVG_BYTES));
    }
    let mut data = Vec::with_capacity(bytes as usize);
    r.seek(SeekFrom::Start(0))
        .and_then(|_| r.take(MAX_SVG_BYTES + 1).read_to_end(&mut data))
        .map_err(|e| corrupt(format!("reading SVG: {e}")))?;
    Ok(data)
}

/// What probing an SVG found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Declared width in pixels (rounded up).
    pub width: u32,
    /// Declared height in pixels.
    pub height: u32,
    /// Notes for the manifest (external references left out).
    pub notes: Vec<String>,
}

/// Size the SVG at the start of `r` (`bytes` long), checking everything [`parse`] checks.
pub fn probe<R: Read + Seek>(r: &mut R, bytes: u64) -> Result<Header, JobError> {
    let data = read_all(r, bytes)?;
    let (tree, notes) = parse(&data)?;
    let size = tree.size();
    Ok(Header {
        width: size.width().ceil().clamp(1.0, u32::MAX as f32) as u32,
        height: size.height().ceil().clamp(1.0, u32::MAX as f32) as u32,
        notes,
    })
}

/// Options that make every external reference resolve to nothing.
fn options() -> usvg::Options<'static> {
    usvg::Options {
        resources_dir: None,
        image_href_resolver: usvg::ImageHrefResolver {
            resolve_data: Box::new(|_, _, _| None),
            resolve_string: Box::new(|_, _| None),
        },
        ..usvg::Options::default()
    }
}

/// Parse and bound the document, then build the render tree; notes name what was left out.
pub fn parse(data: &[u8]) -> Result<(usvg::Tree, Vec<String>), JobError> {
    let text = std::str::from_utf8(data).map_err(|_| corrupt("SVG is not UTF-8 text"))?;
    check_entities(text)?;
    let doc = roxmltree::Document::parse_with_options(
        text,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            nodes_limit: MAX_NODES,
            entity_resolver: None,
        },
    )
    .map_err(|e| match e {
        roxmltree::Error::NodesLimitReached => limit(
            "max_svg_nodes",
            u64::from(MAX_NODES) + 1,
            u64::from(MAX_NODES),
        ),
        roxmltree::Error::EntityReferenceLoop(_) => JobError::LimitExceeded {
            limit: "max_svg_entity_expansion",
            found: MAX_ENTITY_EXPANSION + 1,
            max: MAX_ENTITY_EXPANSION,
        },
        other => corrupt(format!("SVG is not well-formed XML: {other}")),
    })?;
    if doc.root_element().tag_name().name() != "svg" {
        return Err(JobError::UnsupportedFormat(format!(
            "XML whose root element is <{}>, not <svg>",
            doc.root_element().tag_name().name()
        )));
    }
    check_expansion(&doc)?;
    let notes = external_references(&doc);
    let tree =
        usvg::Tree::from_xmltree(&doc, &options()).map_err(|e| corrupt(format!("SVG: {e}")))?;
    Ok((tree, notes))
}

/// References to anything outside the document (never loaded), for the manifest.
fn external_references(doc: &roxmltree::Document<'_>) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for n in doc.descendants().filter(|n| n.is_element()) {
        let href = n
            .attribute(("http://www.w3.org/1999/xlink", "href"))
            .or_else(|| n.attribute("href"));
        if let Some(h) = href
            && !h.starts_with('#')
        {
            found.push(if h.len() > 80 {
                format!("{}…", &h[..h.floor_char_boundary(80)])
            } else {
                h.to_string()
            });
        }
        if n.tag_name().name() == "style"
            && n.text()
                .is_some_and(|t| t.contains("@import") || t.contains("url("))
        {
            found.push("a stylesheet import".into());
        }
    }
    if found.is_empty() {
        return Vec::new();
    }
    let n = found.len();
    found.truncate(3);
    vec![format!(
        "SVG: {n} reference(s) outside the file were not loaded ({}{})",
        found.join(", "),
        if n > 3 { ", …" } else { "" }
    )]
}

/// Bound what entity references can expand to: each reference in the document may pull in up
/// to 256 entity bodies (roxmltree's own cap per reference), so references × 256 × the
/// longest body must stay under [`MAX_ENTITY_EXPANSION`].
fn check_entities(text: &str) -> Result<(), JobError> {
    let Some(start) = text.find("<!ENTITY") else {
        return Ok(());
    };
    let mut longest = 0usize;
    let mut rest = &text[start..];
    while let Some(at) = rest.find("<!ENTITY") {
        rest = &rest[at + 8..];
        let end = rest.find('>').unwrap_or(rest.len());
        // The quoted value, if any (external ones name a file: never fetched).
        let decl = &rest[..end];
        let value = decl
            .find(['"', '\''])
            .and_then(|q| {
                let quote = decl[q..].chars().next()?;
                decl[q + 1..].find(quote).map(|len| len + 1)
            })
            .unwrap_or(0);
        longest = longest.max(value);
    }
    let refs = text.matches('&').count() as u64;
    let bound = refs.saturating_mul(256).saturating_mul(longest as u64);
    if bound > MAX_ENTITY_EXPANSION {
        return Err(limit(
            "max_svg_entity_expansion",
            bound,
            MAX_ENTITY_EXPANSION,
        ));
    }
    Ok(())
}

/// Bound the elements (and nesting) the document has once every `<use>` is expanded.
fn check_expansion(doc: &roxmltree::Document<'_>) -> Result<(), JobError> {
    let ids: HashMap<&str, roxmltree::NodeId> = doc
        .descendants()
        .filter(|n| n.is_element())
        .filter_map(|n| n.attribute("id").map(|id| (id, n.id())))
        .collect();
    let target = |n: roxmltree::Node<'_, '_>| -> Option<roxmltree::NodeId> {
        if n.tag_name().name() != "use" {
            return None;
        }
        let href = n
            .attribute(("http://www.w3.org/1999/xlink", "href"))
            .or_else(|| n.attribute("href"))?;
        ids.get(href.strip_prefix('#')?).copied()
    };
    // Post-order over elements and their `<use>` targets: (elements, depth) per node,
    // memoised; a node met again while in progress is a reference cycle (usvg drops it).
    #[derive(Clone, Copy)]
    enum State {
        InProgress,
        Done(u64, u32),
    }
    let mut memo: HashMap<roxmltree::NodeId, State> = HashMap::new();
    let mut stack: Vec<(roxmltree::NodeId, bool)> = vec![(doc.root_element().id(), false)];
    while let Some((id, expanded)) = stack.pop() {
        let Some(node) = doc.get_node(id) else {
            continue;
        };
        let deps = node
            .children()
            .filter(|c| c.is_element())
            .map(|c| c.id())
            .chain(target(node));
        if !expanded {
            if memo.contains_key(&id) {
                continue;
            }
            memo.insert(id, State::InProgress);
            stack.push((id, true));
            for d in deps {
                if !memo.contains_key(&d) {
                    stack.push((d, false));
                }
            }
            continue;
        }
        let (mut count, mut depth) = (1u64, 0u32);
        for d in deps {
            if let Some(State::Done(c, dd)) = memo.get(&d) {
                count = count.saturating_add(*c);
                depth = depth.max(*dd);
            }
        }
        let depth = depth + 1;
        if count > MAX_EXPANDED_ELEMENTS {
            return Err(limit("max_svg_elements", count, MAX_EXPANDED_ELEMENTS));
        }
        if depth > MAX_DEPTH {
            return Err(limit(
                "max_svg_depth",
                u64::from(depth),
                u64::from(MAX_DEPTH),
            ));
        }
        memo.insert(id, State::Done(count, depth));
    }
    Ok(())
}

/// Rasterise the probed SVG at `path` at the size `need` asks for (the largest rendition, in
/// display pixels), within the limits; transparent where the drawing is.
pub fn decode(
    path: &Path,
    probe: &Probe,
    limits: &Limits,
    need: Option<(u32, u32)>,
) -> Result<Decoded, JobError> {
    let mut f = std::fs::File::open(path).map_err(|e| corrupt(format!("opening SVG: {e}")))?;
    let data = read_all(&mut f, probe.bytes)?;
    let (tree, _) = parse(&data)?;
    let size = tree.size();
    let (w, h) = (f64::from(size.width()), f64::from(size.height()));
    let (nw, nh) = need.map_or((w, h), |(a, b)| (f64::from(a), f64::from(b)));
    let mut scale = (nw / w).max(nh / h);
    // Within the limits: pixels and the longest side.
    let max_pixels = limits.max_pixels as f64;
    scale = scale
        .min((max_pixels / (w * h)).sqrt())
        .min(f64::from(limits.max_dimension) / w.max(h));
    let pw = ((w * scale).round() as u32).max(1);
    let ph = ((h * scale).round() as u32).max(1);
    let mut pixmap = resvg::tiny_skia::Pixmap::new(pw, ph)
        .ok_or_else(|| corrupt(format!("SVG canvas of {pw}x{ph} cannot be made")))?;
    let transform = resvg::tiny_skia::Transform::from_scale(
        pw as f32 / size.width(),
        ph as f32 / size.height(),
    );
    resvg::render(&tree, transform, &mut pixmap.as_mut());
    let data: Vec<u8> = pixmap
        .pixels()
        .iter()
        .flat_map(|p| {
            let c = p.demultiply();
            [c.red(), c.green(), c.blue(), c.alpha()]
        })
        .collect();
    Ok(Decoded {
        pixels: Pixels {
            width: pw,
            height: ph,
            channels: 4,
            data,
        },
        icc: None,
        exif: None,
        shrink: 1,
        notes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(svg: &str) -> Result<(f32, f32), JobError> {
        parse(svg.as_bytes()).map(|(t, _)| (t.size().width(), t.size().height()))
    }

    #[test]
    fn external_references_are_noted_never_loaded() {
        let s = r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="10" height="10"><image href="file:///etc/passwd" width="5" height="5"/><image xlink:href="https://example.com/x.png" width="5" height="5"/></svg>"#;
        let (_, notes) = parse(s.as_bytes()).expect("parses");
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("2 reference(s)") && notes[0].contains("file:///etc/passwd"));
    }

    #[test]
    fn sizes_come_from_width_height_or_view_box() {
        let s = r#"<svg xmlns="http://www.w3.org/2000/svg" width="120" height="80"><rect width="10" height="10"/></svg>"#;
        assert_eq!(size(s).ok(), Some((120.0, 80.0)));
        let v = r#"<?xml version="1.0"?><!-- a comment --><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 32"/>"#;
        assert_eq!(size(v).ok(), Some((64.0, 32.0)));
        assert!(sniff(v.as_bytes()));
        assert!(!sniff(b"<html><body>not svg</body></html>"));
        let html = r#"<html xmlns="http://www.w3.org/1999/xhtml"><svg/></html>"#;
        assert_eq!(size(html).map_err(|e| e.code()), Err("unsupported_format"));
    }

    #[test]
    fn bombs_are_refused_before_usvg_builds_anything() {
        // Billion laughs.
        let mut lol = String::from(r#"<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY l0 "lol">"#);
        for i in 1..10 {
            let prev = format!("&l{};", i - 1).repeat(10);
            lol.push_str(&format!(r#"<!ENTITY l{i} "{prev}">"#));
        }
        lol.push_str(r#"]><svg xmlns="http://www.w3.org/2000/svg"><text>&l9;</text></svg>"#);
        assert_eq!(size(&lol).map_err(|e| e.code()), Err("limit_exceeded"));
        // Wide: one big entity referenced many times.
        let big = "x".repeat(100_000);
        let wide = format!(
            r#"<!DOCTYPE svg [<!ENTITY b "{big}">]><svg xmlns="http://www.w3.org/2000/svg"><desc>{}</desc></svg>"#,
            "&b;".repeat(1000)
        );
        assert_eq!(size(&wide).map_err(|e| e.code()), Err("limit_exceeded"));
        // <use> of <use>s: 10^12 elements.
        let mut uses = String::from(
            r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"><defs><rect id="u0" width="1" height="1"/>"#,
        );
        for i in 1..13 {
            uses.push_str(&format!(r#"<g id="u{i}">"#));
            for _ in 0..10 {
                uses.push_str(&format!(r##"<use xlink:href="#u{}"/>"##, i - 1));
            }
            uses.push_str("</g>");
        }
        uses.push_str(r##"</defs><use href="#u12"/></svg>"##);
        let e = size(&uses).expect_err("use bomb");
        assert_eq!(e.code(), "limit_exceeded");
        assert!(e.to_string().contains("max_svg_elements"), "{e}");
        // Deep nesting.
        let deep = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg">{}{}</svg>"#,
            "<g>".repeat(5000),
            "</g>".repeat(5000)
        );
        let e = size(&deep).expect_err("deep");
        assert!(e.to_string().contains("max_svg_depth"), "{e}");
        // A self-referencing <use> is a cycle, not a hang.
        let cycle = r##"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><g id="a"><use href="#a"/></g></svg>"##;
        assert!(size(cycle).is_ok());
    }
}
