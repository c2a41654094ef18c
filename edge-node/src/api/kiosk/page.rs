//! The kiosk page's static assets, embedded in the binary (nothing is
//! fetched from anywhere else), and the security headers every response of
//! the edge carries: a strict Content-Security-Policy (scripts and styles
//! from this origin only, no inline script, nothing framed), `nosniff`,
//! no referrer.

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::super::state::AppState;

/// The page's policy: its own scripts, styles and API, nothing else.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
/// Everything else the edge serves (JSON, metrics) runs no script at all.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

pub const INDEX_HTML: &str = include_str!("assets/index.html");
pub const APP_JS: &str = include_str!("assets/app.js");
pub const KIOSK_CSS: &str = include_str!("assets/kiosk.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `/kiosk` and its two assets.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/kiosk",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/kiosk/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/kiosk/kiosk.css",
            get(|| async { asset("text/css; charset=utf-8", KIOSK_CSS) }),
        )
}

/// Adds the security headers to every response (the page's policy to the
/// page's own paths).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let page = req.uri().path() == "/kiosk" || req.uri().path().starts_with("/kiosk/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
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
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_no_inline_script_and_names_only_its_own_assets() {
        for (name, html) in [("index.html", INDEX_HTML)] {
            let lower = html.to_ascii_lowercase();
            // Every <script> has a src on this origin and no body.
            for (i, _) in lower.match_indices("<script") {
                let tag_end = lower[i..].find('>').map(|e| i + e).expect("a closed tag");
                let tag = &lower[i..=tag_end];
                assert!(tag.contains("src=\"/kiosk/"), "{name}: {tag}");
                assert!(
                    lower[tag_end + 1..].starts_with("</script>"),
                    "{name}: a script body"
                );
            }
            for attr in [
                " onclick=",
                " onload=",
                " onsubmit=",
                "javascript:",
                " style=",
            ] {
                assert!(!lower.contains(attr), "{name} has {attr}");
            }
            assert!(
                !lower.contains("http://") && !lower.contains("https://"),
                "{name} names another origin"
            );
        }
        for (name, text) in [("app.js", APP_JS), ("kiosk.css", KIOSK_CSS)] {
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{name} names another origin"
            );
        }
        assert!(
            !APP_JS.contains("innerHTML"),
            "text is set with textContent only"
        );
        assert!(!APP_JS.contains("eval("), "no eval");
    }

    #[test]
    fn both_languages_have_every_phrase() {
        // The phrase tables are `en: { … }` and `id: { … }`: the same keys.
        let keys = |lang: &str| -> Vec<String> {
            let start = APP_JS.find(&format!("    {lang}: {{")).expect("the table");
            let end = start + APP_JS[start..].find("\n    }").expect("its end");
            let mut keys: Vec<String> = APP_JS[start..end]
                .lines()
                .skip(1)
                .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.to_string()))
                .collect();
            keys.sort();
            keys
        };
        let (en, id) = (keys("en"), keys("id"));
        assert!(en.len() > 30, "{en:?}");
        assert_eq!(en, id);
    }
}
