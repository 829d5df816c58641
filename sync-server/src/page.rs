//! The web page: one HTML document, its script and its style sheet, built into the binary.
//!
//! The page holds no data, so its routes need no token; everything it shows comes from the
//! `/api` routes, which it calls with the token the user types in (kept in the tab's
//! `sessionStorage`, sent as `Authorization: Bearer`, never in a URL).

use axum::Router;
use axum::extract::OriginalUri;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/app.css");

/// Where `index.html` names the router's mount point, for its `<base href>`.
const BASE_MARK: &str = "{{BASE}}";

/// The page's Content-Security-Policy: its own script and style only (no inline script,
/// no inline style), requests to its own origin only, no frames, no forms posted
/// anywhere.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'self'; form-action 'none'; \
     frame-ancestors 'none'";

/// The page's routes: `/`, `/assets/app.js`, `/assets/app.css`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/app.js", get(script))
        .route("/assets/app.css", get(style))
}

/// The headers of every answer of the page.
fn headers(content_type: &'static str) -> [(HeaderName, HeaderValue); 5] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ]
}

/// The document, with `<base href>` at the router's mount point (`/` unless a host nested
/// the router), so that its relative URLs reach this router's assets and API.
async fn index(OriginalUri(original): OriginalUri) -> Response {
    let base = format!("{}/", original.path().trim_end_matches('/'));
    let page = INDEX.replace(BASE_MARK, &escape_attribute(&base));
    (headers("text/html; charset=utf-8"), page).into_response()
}

async fn script() -> Response {
    (headers("text/javascript; charset=utf-8"), SCRIPT).into_response()
}

async fn style() -> Response {
    (headers("text/css; charset=utf-8"), STYLE).into_response()
}

/// `text` for a double-quoted HTML attribute.
fn escape_attribute(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_is_escaped_for_its_attribute() {
        assert_eq!(
            escape_attribute("/a\"b<c>&'/"),
            "/a&quot;b&lt;c&gt;&amp;&#39;/"
        );
    }

    #[test]
    fn the_document_has_one_base_mark_and_no_inline_script_or_style() {
        assert_eq!(INDEX.matches(BASE_MARK).count(), 1);
        assert!(!INDEX.contains("<script>"), "scripts come from files only");
        assert!(
            !INDEX.contains("style="),
            "no inline style: the CSP forbids it"
        );
        assert!(
            !INDEX.contains("<style"),
            "no inline style: the CSP forbids it"
        );
        for id in [
            "project-select",
            "branch-select",
            "sync-now",
            "phase-prepare",
            "phase-scan",
            "phase-import",
            "phase-finalize",
            "progress",
            "stats",
            "search-input",
            "error",
        ] {
            assert!(
                INDEX.contains(&format!("data-testid=\"{id}\"")),
                "{id} is missing"
            );
        }
        // Rows, restore buttons and results are made by the script.
        for id in ["history-row", "restore", "search-result"] {
            assert!(SCRIPT.contains(&format!("'{id}'")), "{id} is missing");
        }
    }
}
