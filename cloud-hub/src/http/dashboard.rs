//! The dashboard page at `/dashboard`: its assets embedded in the binary
//! (nothing fetched from anywhere else), and the security headers every
//! response of the hub carries — a strict Content-Security-Policy (the
//! page's own scripts, styles and API only, no inline script, nothing
//! framed), `nosniff`, no referrer. The page signs in through
//! [`super::session`] and reads the fleet API.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::{Router, routing};

use http_listener::page::asset;
pub use http_listener::page::{API_CSP, PAGE_CSP};

pub const INDEX_HTML: &str = include_str!("dashboard/index.html");
pub const APP_JS: &str = include_str!("dashboard/app.js");
pub const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");

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
    http_listener::page::add_security_headers(resp.headers_mut(), page);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::page;

    #[test]
    fn the_page_has_no_inline_script_and_names_only_its_own_assets() {
        let mut problems = page::inline_problems(INDEX_HTML, "/dashboard/");
        // The one URL in the script is SVG's namespace: a name, not a fetch.
        problems.extend(page::other_origins(
            "app.js",
            APP_JS,
            &["http://www.w3.org/2000/svg"],
        ));
        problems.extend(page::other_origins("dashboard.css", DASHBOARD_CSS, &[]));
        problems.extend(page::unsafe_script(APP_JS));
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn both_languages_have_every_phrase() {
        let (en, id) = (
            page::phrase_keys(APP_JS, "en"),
            page::phrase_keys(APP_JS, "id"),
        );
        assert!(en.len() > 40, "{en:?}");
        assert_eq!(en, id);
        let missing = page::unlabelled(INDEX_HTML, &en);
        assert!(missing.is_empty(), "{missing:?}");
    }
}
