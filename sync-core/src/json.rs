//! JSON views of results, shared by every front end (the command line's `--json`, the
//! HTTP API), so that one result has one shape everywhere.

use std::borrow::Cow;

use serde::Serialize;

use crate::{ChunkMeta, RepoPath, SearchHit};

/// A repository path in JSON output: `path` is always a string (lossy for a path that is
/// not UTF-8), and `path_bytes` holds the exact bytes when it is not UTF-8.
///
/// ```
/// use sync_core::{PathJson, RepoPath};
/// let path = RepoPath::new("src/lib.rs")?;
/// assert_eq!(serde_json::to_string(&PathJson::new(&path))?, r#"{"path":"src/lib.rs"}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct PathJson<'a> {
    path: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_bytes: Option<&'a [u8]>,
}

impl<'a> PathJson<'a> {
    /// The view of `path`.
    pub fn new(path: &'a RepoPath) -> Self {
        match path.to_str() {
            Some(text) => Self {
                path: Cow::Borrowed(text),
                path_bytes: None,
            },
            None => Self {
                path: path.to_string_lossy(),
                path_bytes: Some(path.as_bytes()),
            },
        }
    }
}

/// One search hit as JSON: the entry's path ([`PathJson`]), `start_line`, `end_line`,
/// `score`, `snippet` (its first non-blank lines), `ordinal`, `language`, `kind` and
/// `symbol` (its [`ChunkMeta`](crate::ChunkMeta), each when known) and `content` (its
/// whole text). `projsync search --json` prints one per line; the HTTP API answers a list.
#[derive(Debug, Clone, Serialize)]
pub struct HitJson<'a> {
    #[serde(flatten)]
    path: PathJson<'a>,
    start_line: u32,
    end_line: u32,
    score: f32,
    snippet: String,
    ordinal: u32,
    #[serde(flatten)]
    meta: &'a ChunkMeta,
    content: &'a str,
}

impl<'a> HitJson<'a> {
    /// Lines of the entry's text a snippet shows at most.
    pub const SNIPPET_LINES: usize = 3;
    /// Characters a snippet shows at most, about.
    pub const SNIPPET_CHARS: usize = 240;

    /// The view of `hit`.
    pub fn new(hit: &'a SearchHit) -> Self {
        let e = &hit.entry;
        Self {
            path: PathJson::new(&e.path),
            start_line: e.start_line,
            end_line: e.end_line,
            score: hit.score,
            snippet: snippet(&e.content),
            ordinal: e.ordinal,
            meta: &e.meta,
            content: &e.content,
        }
    }
}

/// The first non-blank lines of `text`, at most [`HitJson::SNIPPET_LINES`] lines and about
/// [`HitJson::SNIPPET_CHARS`] characters.
fn snippet(text: &str) -> String {
    let mut out = String::new();
    for line in text
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take(HitJson::SNIPPET_LINES)
    {
        if out.chars().count() >= HitJson::SNIPPET_CHARS {
            break;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.extend(line.trim_end().chars().take(HitJson::SNIPPET_CHARS));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::snippet;

    #[test]
    fn snippets_skip_leading_blank_lines_and_stop_after_three() {
        assert_eq!(snippet("\n\n  \na\nb  \nc\nd\n"), "a\nb\nc");
        assert_eq!(snippet(""), "");
        let long = "x".repeat(1000);
        assert_eq!(snippet(&format!("{long}\n{long}")).chars().count(), 240);
    }
}
