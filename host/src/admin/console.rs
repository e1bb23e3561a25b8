//! The operator console at `/ui`: one static HTML page, a stylesheet and a
//! hand-written script (`console/`), compiled into the binary with
//! `include_str!`. No network at run time, no build step.
//!
//! The console holds no data and no second way to change state: the page
//! calls the same `/v1` routes as the CLI (documented in the OpenAPI
//! document) with `fetch`, sending the bearer token the operator typed in
//! an `Authorization` header (kept in the tab's `sessionStorage`, never in
//! a URL). So the assets themselves need no token; the browser guard of a
//! host without one still applies to them. Every answer carries a strict
//! Content-Security-Policy (scripts and styles from this origin only, no
//! framing), so an event payload shown on a page cannot run as script.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::AppState;

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// What a page may load and who may frame it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The console's routes: `/ui` (and `/ui/`), its script and stylesheet;
/// `/` redirects to `/ui`.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route(
            "/ui",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/console.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets() {
        assert!(INDEX.contains("src=\"/ui/console.js\""));
        assert!(INDEX.contains("href=\"/ui/console.css\""));
        for text in [INDEX, SCRIPT, STYLE] {
            let text = text.replace("http://www.w3.org/2000/svg", "");
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        // Data reaches the page as text, never as markup.
        assert!(!SCRIPT.contains("innerHTML"));
    }
}
