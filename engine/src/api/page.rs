//! The web page `serve` serves at `/`: drop files, watch their uploads and jobs, browse the job
//! list, look at a job's renditions and play its video. One HTML file, one script and one
//! style sheet under `page/`, embedded in the binary (no build step), and hls.js — vendored,
//! pinned and licensed under `page/vendor/` — for browsers whose `<video>` cannot play HLS by
//! itself. The page talks to the API like any client: an API key, when the server needs one,
//! is kept in the browser's storage and sent as a header, never put in a URL.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// What the page may load: its own files, and media and API calls from anywhere the API hands
/// out (a CDN, presigned S3 URLs); hls.js runs its transmuxer in a worker made from a blob.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob: http: https:; media-src 'self' blob: http: https:; \
    connect-src 'self' http: https:; worker-src 'self' blob:; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'none'";

/// The page's files: name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("page/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("page/app.css"),
    ),
    (
        "hls.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("page/vendor/hls.min.js"),
    ),
    (
        "hls.js-LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("page/vendor/hls.js-LICENSE"),
    ),
];

/// `GET /`.
pub async fn index() -> Response {
    respond(
        "text/html; charset=utf-8",
        include_bytes!("page/index.html"),
    )
}

/// `GET /page/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => respond(content_type, body),
        None => super::ApiError::not_found("such page file").into_response(),
    }
}

fn respond(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated on every load, so a new binary's page is what a reload shows.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    // Output URLs carry tokens: never hand them to another site.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
