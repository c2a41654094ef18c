//! The kiosk page's static assets, embedded in the binary (nothing is
//! fetched from anywhere else), and the security headers every response of
//! the edge carries: a strict Content-Security-Policy (scripts and styles
//! from this origin only, no inline script, nothing framed), `nosniff`,
//! no referrer.

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;

use super::super::state::AppState;

use http_listener::page::asset;
pub use http_listener::page::{API_CSP, PAGE_CSP};

pub const INDEX_HTML: &str = include_str!("assets/index.html");
pub const APP_JS: &str = include_str!("assets/app.js");
pub const KIOSK_CSS: &str = include_str!("assets/kiosk.css");
pub const SW_JS: &str = include_str!("assets/sw.js");

/// `/kiosk`, its assets, and its service worker (Web Push).
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
        .route(
            "/kiosk/sw.js",
            get(|| async { asset("text/javascript; charset=utf-8", SW_JS) }),
        )
}

/// Adds the security headers to every response (the page's policy to the
/// page's own paths).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let page = req.uri().path() == "/kiosk" || req.uri().path().starts_with("/kiosk/");
    let mut resp = next.run(req).await;
    http_listener::page::add_security_headers(resp.headers_mut(), page);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::page;

    #[test]
    fn the_page_has_no_inline_script_and_names_only_its_own_assets() {
        let mut problems = page::inline_problems(INDEX_HTML, "/kiosk/");
        problems.extend(page::other_origins("app.js", APP_JS, &[]));
        problems.extend(page::other_origins("kiosk.css", KIOSK_CSS, &[]));
        problems.extend(page::other_origins("sw.js", SW_JS, &[]));
        problems.extend(page::unsafe_script(APP_JS));
        problems.extend(page::unsafe_script(SW_JS));
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn both_languages_have_every_phrase() {
        let (en, id) = (
            page::phrase_keys(APP_JS, "en"),
            page::phrase_keys(APP_JS, "id"),
        );
        assert!(en.len() > 30, "{en:?}");
        assert_eq!(en, id);
        let missing = page::unlabelled(INDEX_HTML, &en);
        assert!(missing.is_empty(), "{missing:?}");
        let (en, id) = (
            page::phrase_keys(SW_JS, "en"),
            page::phrase_keys(SW_JS, "id"),
        );
        assert!(en.len() >= 5, "{en:?}");
        assert_eq!(en, id);
    }
}
