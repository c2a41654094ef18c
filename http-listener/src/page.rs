//! What the pages served from the binary (the edge's kiosk page, the hub's
//! dashboard) and every other response share: the security headers — a
//! strict Content-Security-Policy (a page's own scripts, styles and API
//! only, no inline script, nothing framed; no script at all elsewhere),
//! `nosniff`, no referrer, no framing, a window of its own — an embedded
//! asset's response, and reading one cookie of a request.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// A page's policy: its own scripts, styles and API, nothing else.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
/// Everything else (JSON, metrics) runs no script at all.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// An asset embedded in the binary, revalidated on every load (a new
/// binary's page is seen at once).
pub fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// Sets the security headers on a response: [`PAGE_CSP`] for a page's own
/// paths (`page`), [`API_CSP`] for the rest.
pub fn add_security_headers(h: &mut HeaderMap, page: bool) {
    let csp = if page { PAGE_CSP } else { API_CSP };
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

/// The value of the cookie `name` in a request's `Cookie` headers (the
/// last one when it is sent twice); `None` without one.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            if let Some((n, value)) = pair.trim().split_once('=')
                && n == name
            {
                found = Some(value);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_found_by_its_name_among_others_and_the_last_wins() {
        let mut h = HeaderMap::new();
        assert_eq!(cookie(&h, "a"), None);
        h.append(header::COOKIE, HeaderValue::from_static("lang=id; a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2;a=3"));
        assert_eq!(cookie(&h, "a"), Some("3"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "lang"), Some("id"));
        assert_eq!(cookie(&h, "an"), None, "a prefix is not the name");
        h.insert(header::COOKIE, HeaderValue::from_static("a="));
        assert_eq!(cookie(&h, "a"), Some(""));
    }

    #[test]
    fn pages_may_run_their_own_script_and_nothing_else_runs_any() {
        let mut h = HeaderMap::new();
        add_security_headers(&mut h, true);
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], PAGE_CSP);
        assert!(!PAGE_CSP.contains("unsafe") && PAGE_CSP.contains("script-src 'self'"));
        add_security_headers(&mut h, false);
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], API_CSP);
        assert!(!API_CSP.contains("script-src"));
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
    }
}
