//! The operator console at `/ui`: one static HTML page, a stylesheet and
//! three small hand-written scripts (`console/`: `console.js` the helpers,
//! sign-in, overview and routing; `handler.js` a handler's page;
//! `topics.js` the topics and cluster pages), compiled into the binary with
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
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::{ApiError, AppState};

const INDEX: &str = include_str!("console/index.html");
const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Every file under `/ui/`: name, media type, text.
const ASSETS: &[(&str, &str, &str)] = &[
    ("console.js", JS, include_str!("console/console.js")),
    ("handler.js", JS, include_str!("console/handler.js")),
    ("topics.js", JS, include_str!("console/topics.js")),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("console/console.css"),
    ),
];

/// What a page may load and who may frame it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The console's routes: `/ui` (and `/ui/`), its scripts and stylesheet;
/// `/` redirects to `/ui`.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/ui", get(|| async { asset(HTML, INDEX) }))
        .route("/ui/", get(|| async { asset(HTML, INDEX) }))
        .route("/ui/{file}", get(file))
}

async fn file(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, text)) => asset(kind, text),
        None => ApiError::not_found(format!("the console has no file `{name}`")).into_response(),
    }
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
        for (name, _, text) in ASSETS {
            let tag = if name.ends_with(".js") { "src" } else { "href" };
            assert!(INDEX.contains(&format!("{tag}=\"/ui/{name}\"")), "{name}");
            // Data reaches the page as text, never as markup.
            assert!(!text.contains("innerHTML"), "{name}");
        }
        for text in std::iter::once(INDEX).chain(ASSETS.iter().map(|a| a.2)) {
            let text = text.replace("http://www.w3.org/2000/svg", "");
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
    }
}
