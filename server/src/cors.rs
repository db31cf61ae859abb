//! Cross-origin use of the HTTP API: web apps on the origins an operator
//! allows (none by default) may call `/v1/...` from a browser. The API holds
//! no cookies or credentials, so CORS only decides which pages' scripts may
//! read its answers.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use axum::http::{header, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

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

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_CACHE: Duration = Duration::from_secs(3600);

/// The layer answering preflights and marking answers for `origins`; `None`
/// when no origin is allowed (no CORS headers at all).
pub(crate) fn layer(origins: &[CorsOrigin]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.contains(&CorsOrigin::ANY) {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.0.clone()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::POST])
            .allow_headers([header::CONTENT_TYPE])
            .max_age(PREFLIGHT_CACHE),
    )
}
