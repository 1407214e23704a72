//! Comma-separated header token lists (RFC 9110 §5.6.1), parsed, never
//! substring-matched: `Connection: notupgrade` does not contain `upgrade`.

use http::HeaderMap;
use http::header::HeaderName;

/// The comma-separated tokens of every line of header `name`, trimmed, empty
/// elements skipped.
pub fn header_tokens(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim_matches(|c| c == ' ' || c == '\t'))
        .filter(|t| !t.is_empty())
}

/// Whether header `name` lists `token` (case-insensitively).
///
/// ```
/// use http::{HeaderMap, header::CONNECTION};
/// use tower_ws::handshake::header_has_token;
///
/// let mut h = HeaderMap::new();
/// h.insert(CONNECTION, "keep-alive, Upgrade".parse().unwrap());
/// assert!(header_has_token(&h, CONNECTION, "upgrade"));
/// h.insert(CONNECTION, "notupgrade".parse().unwrap());
/// assert!(!header_has_token(&h, CONNECTION, "upgrade"));
/// ```
pub fn header_has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    header_tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}
