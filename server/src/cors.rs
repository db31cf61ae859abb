//! Cross-origin use of the HTTP API: web apps on the origins an operator
//! allows (none by default) may call `/v1/...` from a browser. The API holds
//! no cookies or credentials, so CORS only decides which pages' scripts may
//! read its answers.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// An origin allowed to call the HTTP API from a browser: `https://app.example`
/// (scheme, host and port only), or `*` for any.
///
/// ```
/// use wormhole_sync_server::CorsOrigin;
///
/// let origin: CorsOrigin = "https://app.example:8443".parse()?;
/// assert_eq!(origin.to_string(), "https://app.example:8443");
/// assert!("https://app.example/page".parse::<CorsOrigin>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct CorsOrigin(Option<HeaderValue>);

impl CorsOrigin {
    /// Any origin (`*`).
    pub const ANY: CorsOrigin = CorsOrigin(None);
}

impl FromStr for CorsOrigin {
    type Err = String;

    fn from_str(text: &str) -> Result<CorsOrigin, String> {
        if text == "*" {
            return Ok(CorsOrigin::ANY);
        }
        let refused =
            || format!("{text:?} is not an origin like https://app.example (scheme, host and port only) or *");
        // Browsers send the origin in lower case.
        let lower = text.to_ascii_lowercase();
        let rest = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://")).ok_or_else(refused)?;
        let well_formed = !rest.is_empty()
            && rest.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if !well_formed {
            return Err(refused());
        }
        HeaderValue::from_str(&lower).map(|v| CorsOrigin(Some(v))).map_err(|_| refused())
    }
}

impl fmt::Display for CorsOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("*"),
            Some(origin) => f.write_str(origin.to_str().unwrap_or("?")),
        }
    }
}

impl fmt::Debug for CorsOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CorsOrigin({self})")
    }
}

/// How long a browser may cache a preflight's answer, in seconds.
const PREFLIGHT_CACHE_SECONDS: &str = "3600";

/// The origins allowed, as the middleware checks them.
#[derive(Clone)]
pub(crate) struct Allowed(Arc<[CorsOrigin]>);

impl Allowed {
    /// `None` when no origin is allowed (no CORS headers at all).
    pub(crate) fn new(origins: &[CorsOrigin]) -> Option<Allowed> {
        (!origins.is_empty()).then(|| Allowed(origins.into()))
    }

    /// What `Access-Control-Allow-Origin` says to a request from `origin`, if allowed.
    fn answer(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        if self.0.contains(&CorsOrigin::ANY) {
            return Some(HeaderValue::from_static("*"));
        }
        self.0.iter().any(|o| o.0.as_ref() == Some(origin)).then(|| origin.clone())
    }
}

/// Answers preflights from allowed origins and marks other answers to them;
/// requests from anywhere else pass untouched. (Written here rather than
/// taken from tower-http: its features, unified with reqwest's in this
/// workspace, would raise the server's minimum Rust.)
pub(crate) async fn middleware(State(allowed): State<Allowed>, request: Request, next: Next) -> Response {
    let Some(allow) = request.headers().get(header::ORIGIN).and_then(|o| allowed.answer(o)) else {
        return next.run(request).await;
    };
    let preflight =
        request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight { StatusCode::OK.into_response() } else { next.run(request).await };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if preflight {
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type"));
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(PREFLIGHT_CACHE_SECONDS));
    }
    response
}
