//! The page at `/`: built from the current sources, served to browsers with
//! headers that keep it safe on the open internet, off with `--no-page`.

mod support;

use std::path::{Path, PathBuf};

use support::{raw, Reply, TestServer};
use wormhole_sync_server::ServerConfig;

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

fn get(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    head += "\r\n";
    raw(server.addr, head.as_bytes()).unwrap()
}

/// The value of `name` in a reply's headers (lower-cased names).
fn header(reply: &Reply, name: &str) -> Option<String> {
    reply.headers.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// What the page is built from now, as tools/page-inputs.sh (the one list of its inputs) hashes it.
fn page_inputs() -> String {
    let listed = std::process::Command::new("bash").arg(root().join("tools/page-inputs.sh")).output().unwrap();
    assert!(listed.status.success(), "tools/page-inputs.sh failed: {}", String::from_utf8_lossy(&listed.stderr));
    String::from_utf8(listed.stdout).unwrap()
}

/// The shipped page (server/page/) was built from the sources as they are:
/// whoever changes the core, the browser package or the page runs
/// tools/build-page.sh and commits its output.
#[test]
fn the_shipped_page_is_built_from_the_current_sources() {
    let recorded = std::fs::read_to_string(root().join("server/page/INPUTS")).unwrap();
    let current = page_inputs();
    let changed: Vec<&str> = current.lines().filter(|line| !recorded.lines().any(|r| r == *line)).collect();
    let gone: Vec<&str> = recorded.lines().filter(|line| !current.lines().any(|c| c == *line)).collect();
    assert!(
        changed.is_empty() && gone.is_empty(),
        "server/page/ is out of date; run tools/build-page.sh and commit server/page/.\nchanged or new: {changed:#?}\nrecorded but not current: {gone:#?}"
    );
}

#[test]
fn browsers_get_the_page_with_strict_headers() {
    let server = TestServer::memory(ServerConfig::default());
    let page = get(&server, "/", &[("Accept", BROWSER_ACCEPT)]);
    assert_eq!(page.status, 200);
    assert_eq!(header(&page, "content-type").as_deref(), Some("text/html; charset=utf-8"));
    let csp = header(&page, "content-security-policy").expect("a Content-Security-Policy");
    for directive in
        ["default-src 'none'", "script-src 'self' 'wasm-unsafe-eval'", "connect-src 'self'", "frame-ancestors 'none'"]
    {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("http"), "{csp}");
    assert_eq!(header(&page, "referrer-policy").as_deref(), Some("no-referrer"));
    assert_eq!(header(&page, "x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(header(&page, "cache-control").as_deref(), Some("no-store"));

    // Nothing inline and nothing from elsewhere: every script and style is a file of the page's own.
    let html = String::from_utf8(page.body).unwrap();
    assert!(!html.contains("://"), "the page names another origin");
    assert!(!html.contains(" style=") && !html.contains("<style"), "inline style");
    for script in html.split("<script").skip(1) {
        assert!(script.trim_start().starts_with("type=\"module\" src=\"page/"), "an inline script: {script}");
    }
    for (path, kind) in [
        ("/page/page.js", "text/javascript; charset=utf-8"),
        ("/page/page.css", "text/css; charset=utf-8"),
        ("/page/wormhole-sync.js", "text/javascript; charset=utf-8"),
        ("/page/wormhole_sync_web.js", "text/javascript; charset=utf-8"),
        ("/page/wormhole_sync_web_bg.wasm", "application/wasm"),
    ] {
        let asset = get(&server, path, &[]);
        assert_eq!((asset.status, header(&asset, "content-type").as_deref()), (200, Some(kind)), "{path}");
        assert!(header(&asset, "content-security-policy").is_some(), "{path}");
        let on_disk = std::fs::read(root().join("server").join(path.trim_start_matches('/'))).unwrap();
        assert_eq!(asset.body, on_disk, "{path} is served as built");
    }
    assert_eq!(get(&server, "/page/INPUTS", &[]).status, 404);
    assert_eq!(get(&server, "/page/..%2FCargo.toml", &[]).status, 404);
}

#[test]
fn the_webassembly_is_sent_compressed_and_revalidated() {
    let server = TestServer::memory(ServerConfig::default());
    let plain = get(&server, "/page/wormhole_sync_web_bg.wasm", &[]);
    let gzipped = get(&server, "/page/wormhole_sync_web_bg.wasm", &[("Accept-Encoding", "gzip, br")]);
    assert_eq!(header(&plain, "content-encoding"), None);
    assert_eq!(header(&gzipped, "content-encoding").as_deref(), Some("gzip"));
    assert!(gzipped.body.len() * 2 < plain.body.len(), "{} vs {}", gzipped.body.len(), plain.body.len());
    assert_eq!(&gzipped.body[..2], b"\x1f\x8b");

    let etag = header(&plain, "etag").expect("an ETag");
    let again = get(&server, "/page/wormhole_sync_web_bg.wasm", &[("If-None-Match", &etag)]);
    assert_eq!((again.status, again.body.len()), (304, 0));
    let stale = get(&server, "/page/wormhole_sync_web_bg.wasm", &[("If-None-Match", "\"other\"")]);
    assert_eq!(stale.status, 200);
}

#[test]
fn scripts_still_get_the_plain_text_and_no_page_turns_the_page_off() {
    let server = TestServer::memory(ServerConfig::default());
    let text = get(&server, "/", &[("Accept", "*/*")]);
    assert_eq!(header(&text, "content-type").as_deref(), Some("text/plain; charset=utf-8"));

    let config = ServerConfig { page: false, ..ServerConfig::default() };
    let server = TestServer::memory(config);
    let text = get(&server, "/", &[("Accept", BROWSER_ACCEPT)]);
    assert_eq!(header(&text, "content-type").as_deref(), Some("text/plain; charset=utf-8"));
    assert_eq!(get(&server, "/page/page.js", &[]).status, 404);
}
