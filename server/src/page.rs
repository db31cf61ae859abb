//! The page a browser gets at `/`: send text or a small file and get a code,
//! or type a code and receive. It is the project's core compiled to
//! WebAssembly (`web/`), built by `tools/build-page.sh` into `server/page/`
//! and embedded here, so the server needs no files at run time and no
//! WebAssembly toolchain to build. `server/page/INPUTS` records what it was
//! built from; a test checks that it matches the sources.
//!
//! The page runs entirely in the browser and talks to this server's HTTP API
//! on its own origin; the code and the data never reach the server (the
//! receive link carries the code in the URL's fragment). Its headers keep
//! it that way on the open internet: no third-party resources, no inline
//! script, no referrer, no framing.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::App;

/// One embedded file of the page.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// The same, gzip-compressed, where that is worth it.
    gzipped: Option<&'static [u8]>,
}

/// An embedded file of `server/page/`, by name.
macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../page/", $name)),
            gzipped: None,
        }
    };
}

const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

/// The files under `/page/`.
const ASSETS: &[Asset] = &[
    asset!("page.js", "text/javascript; charset=utf-8"),
    asset!("page.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("wormhole-sync.js", "text/javascript; charset=utf-8"),
    asset!("wormhole_sync_web.js", "text/javascript; charset=utf-8"),
    Asset {
        gzipped: Some(include_bytes!("../page/wormhole_sync_web_bg.wasm.gz")),
        ..asset!("wormhole_sync_web_bg.wasm", "application/wasm")
    },
];

/// What the page may load and do: its own scripts (and compiling its own
/// WebAssembly), its own styles, requests to this origin only; nothing
/// inline, no plugins, no forms posted anywhere, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self'; connect-src 'self'; img-src 'self' blob:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// One version tag for every file: they are built together (a hash of
/// `INPUTS`, which lists what they were built from).
const VERSION: u64 = fnv1a(include_bytes!("../page/INPUTS"));

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `GET /` from a browser.
pub(crate) fn index(request: &HeaderMap) -> Response {
    // No store: a reload always gets the page (and the browser keeps no copy
    // of a page that was mid-exchange in its back/forward cache).
    serve(&INDEX, request, "no-store")
}

/// `GET /page/{name}`.
pub(crate) async fn asset(State(app): State<Arc<App>>, Path(name): Path<String>, request: HeaderMap) -> Response {
    match ASSETS.iter().find(|asset| asset.name == name) {
        Some(asset) if app.config.page => serve(asset, &request, "no-cache"),
        _ => (StatusCode::NOT_FOUND, security_headers(), "no such file").into_response(),
    }
}

/// Whether `GET /` from this client should get the page rather than the
/// plain-text description (which `curl` and scripts keep getting).
pub(crate) fn wants_page(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split(',').any(|kind| kind.trim().starts_with("text/html")))
}

fn serve(asset: &Asset, request: &HeaderMap, cache: &'static str) -> Response {
    let etag = format!("\"{VERSION:016x}\"");
    let mut headers = security_headers();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::VARY, HeaderValue::from_static("accept, accept-encoding"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    let unchanged = request.get_all(header::IF_NONE_MATCH).iter().any(|value| value.as_bytes() == etag.as_bytes());
    if unchanged {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    let body = match asset.gzipped {
        Some(gzipped) if accepts_gzip(request) => {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            gzipped
        }
        _ => asset.body,
    };
    (StatusCode::OK, headers, body).into_response()
}

fn accepts_gzip(request: &HeaderMap) -> bool {
    request.get_all(header::ACCEPT_ENCODING).iter().filter_map(|value| value.to_str().ok()).any(|value| {
        value.split(',').any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !refused
        })
    })
}

/// The headers of every response of the page's.
fn security_headers() -> HeaderMap {
    [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
        (HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
    ]
    .into_iter()
    .map(|(name, value)| (name, HeaderValue::from_static(value)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(HeaderName, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(name, value)| (name.clone(), HeaderValue::from_static(value))).collect()
    }

    #[test]
    fn browsers_get_the_page_and_scripts_the_text() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(wants_page(&headers(&[(header::ACCEPT, browser)])));
        assert!(!wants_page(&headers(&[(header::ACCEPT, "*/*")])));
        assert!(!wants_page(&HeaderMap::new()));
    }

    #[test]
    fn gzip_only_where_accepted() {
        assert!(accepts_gzip(&headers(&[(header::ACCEPT_ENCODING, "gzip, deflate, br")])));
        assert!(accepts_gzip(&headers(&[(header::ACCEPT_ENCODING, "br;q=1.0, GZIP;q=0.5")])));
        assert!(!accepts_gzip(&headers(&[(header::ACCEPT_ENCODING, "gzip;q=0, br")])));
        assert!(!accepts_gzip(&headers(&[(header::ACCEPT_ENCODING, "identity")])));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
