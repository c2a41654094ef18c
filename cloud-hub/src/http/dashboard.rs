//! The dashboard page at `/dashboard`: its assets embedded in the binary
//! (nothing fetched from anywhere else), and the security headers every
//! response of the hub carries — a strict Content-Security-Policy (the
//! page's own scripts, styles and API only, no inline script, nothing
//! framed), `nosniff`, no referrer. The page signs in through
//! [`super::session`] and reads the fleet API.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, routing};

/// The page's policy: its own scripts, styles and API, nothing else.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
/// Everything else the hub serves (JSON, metrics) runs no script at all.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

pub const INDEX_HTML: &str = include_str!("dashboard/index.html");
pub const APP_JS: &str = include_str!("dashboard/app.js");
pub const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");

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

/// `/dashboard`, its two assets and the session routes.
pub fn routes<S: Clone + Send + Sync + 'static>(session: Router<S>) -> Router<S> {
    Router::new()
        .route(
            "/dashboard",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/dashboard/dashboard.css",
            get(|| async { asset("text/css; charset=utf-8", DASHBOARD_CSS) }),
        )
        .route(
            "/",
            routing::get(|| async { axum::response::Redirect::to("/dashboard") }),
        )
        .merge(session)
}

/// Adds the security headers to every response (the page's policy to the
/// page's own paths).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let page =
        path == "/dashboard" || path == "/dashboard/app.js" || path == "/dashboard/dashboard.css";
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
        let lower = INDEX_HTML.to_ascii_lowercase();
        for (i, _) in lower.match_indices("<script") {
            let tag_end = lower[i..].find('>').map(|e| i + e).expect("a closed tag");
            let tag = &lower[i..=tag_end];
            assert!(tag.contains("src=\"/dashboard/"), "{tag}");
            assert!(
                lower[tag_end + 1..].starts_with("</script>"),
                "a script body"
            );
        }
        for attr in [
            " onclick=",
            " onload=",
            " onsubmit=",
            "javascript:",
            " style=",
        ] {
            assert!(!lower.contains(attr), "index.html has {attr}");
        }
        for (name, text) in [("index.html", INDEX_HTML), ("dashboard.css", DASHBOARD_CSS)] {
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{name} names another origin"
            );
        }
        // The one URL in the script is SVG's namespace, which is a name,
        // not a fetch.
        assert_eq!(
            APP_JS.matches("http").count(),
            APP_JS.matches("http://www.w3.org/2000/svg").count(),
            "app.js names another origin"
        );
        assert!(
            !APP_JS.contains("innerHTML"),
            "text is set with textContent only"
        );
        assert!(!APP_JS.contains("eval("), "no eval");
    }

    #[test]
    fn both_languages_have_every_phrase() {
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
        assert!(en.len() > 40, "{en:?}");
        assert_eq!(en, id);
        // Every data-t label of the page has a phrase.
        for (i, _) in INDEX_HTML.match_indices("data-t=\"") {
            let key = &INDEX_HTML[i + 8..];
            let key = &key[..key.find('"').expect("closed")];
            assert!(en.iter().any(|k| k == key), "no phrase for {key}");
        }
    }
}
