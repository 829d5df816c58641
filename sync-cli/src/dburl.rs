//! The store named with `--db`, and keeping its password out of everything printed.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use url::Url;

/// What kind of store a `--db` value names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DbKind {
    /// A SQLite file: a path, or `sqlite://PATH` / `sqlite:PATH`.
    Sqlite,
    /// PostgreSQL: `postgres://…` or `postgresql://…`.
    Postgres,
    /// A URL of a scheme no store here serves.
    Other(String),
}

/// The `--db` value: where the store is, how to name it in messages, and the secret that
/// must never be printed.
#[derive(Clone)]
pub(crate) struct DbSpec {
    raw: String,
    kind: DbKind,
    /// The URL with its password replaced by `***`.
    label: String,
    /// The password as written (percent-encoded) and decoded; empty without one.
    secrets: Vec<String>,
}

impl std::fmt::Debug for DbSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSpec")
            .field("db", &self.label)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The scheme of `s` if it starts like a URL (`scheme://`).
fn scheme(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

impl DbSpec {
    /// Reads a `--db` value. Never fails: a value no store can use is refused when the
    /// store is opened, with a message naming it (redacted).
    pub(crate) fn parse(raw: &str) -> Self {
        let kind = match scheme(raw).map(str::to_ascii_lowercase) {
            // A path, or `sqlite:PATH`.
            None => DbKind::Sqlite,
            Some(s) if s == "sqlite" => DbKind::Sqlite,
            Some(s) if s == "postgres" || s == "postgresql" => DbKind::Postgres,
            Some(s) => DbKind::Other(s),
        };
        let (label, secrets) = match (&kind, scheme(raw)) {
            (DbKind::Sqlite, _) | (_, None) => (raw.to_owned(), Vec::new()),
            (_, Some(scheme)) => redact_url(raw, scheme),
        };
        Self {
            raw: raw.to_owned(),
            kind,
            label,
            secrets,
        }
    }

    /// The value as given, for the store's own parser. Never print it.
    pub(crate) fn raw(&self) -> &str {
        &self.raw
    }

    /// What kind of store it names.
    pub(crate) fn kind(&self) -> &DbKind {
        &self.kind
    }

    /// Whether it names a PostgreSQL server.
    pub(crate) fn is_postgres(&self) -> bool {
        self.kind == DbKind::Postgres
    }

    /// The store's name for messages: the URL with its password replaced by `***`.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// `text` with every occurrence of the password (as written and percent-decoded)
    /// replaced by `***`: the last guard before anything is printed.
    pub(crate) fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), "***"));
            }
        }
        out
    }
}

/// The URL with its password replaced by `***`, and the password's forms to scrub.
///
/// The URL is parsed as URLs are (WHATWG, as `url` and sqlx do): the user information ends
/// at the *last* `@` of the authority and the password starts after the first `:` of it,
/// so a password may contain `@` and `:`.
fn redact_url(raw: &str, scheme: &str) -> (String, Vec<String>) {
    match Url::parse(raw) {
        Ok(mut url) => {
            let Some(password) = url.password().map(str::to_owned) else {
                return (raw.to_owned(), Vec::new());
            };
            let mut secrets = vec![password.clone()];
            let decoded = percent_decode_str(&password).decode_utf8_lossy();
            if decoded != password {
                secrets.push(decoded.into_owned());
            }
            // The longest form first, so that a decoded password inside the encoded one
            // is not left half-replaced.
            secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
            secrets.retain(|s| !s.is_empty());
            let label = match url.set_password(Some("***")) {
                Ok(()) => url.to_string(),
                Err(()) => format!("{scheme}://***"),
            };
            (label, secrets)
        }
        Err(_) => {
            // Not a URL: hide everything up to the last `@`, which is where a password
            // would be, and scrub that part wherever it shows up.
            let rest = &raw[scheme.len() + 3..];
            match rest.rfind('@') {
                Some(at) => {
                    let userinfo = &rest[..at];
                    let secret = userinfo
                        .split_once(':')
                        .map_or(userinfo, |(_, password)| password);
                    let secrets = [secret, userinfo]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                    (format!("{scheme}://***@{}", &rest[at + 1..]), secrets)
                }
                None => (raw.to_owned(), Vec::new()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "postgres://sync:p@ss:w@rd@db.example:5432/app?sslmode=disable";

    #[test]
    fn a_password_with_at_and_colon_is_found_whole() {
        let db = DbSpec::parse(URL);
        assert!(db.is_postgres());
        assert_eq!(
            db.label(),
            "postgres://sync:***@db.example:5432/app?sslmode=disable"
        );
        for leak in ["p@ss:w@rd", "p%40ss%3Aw%40rd", "ss:w@rd", "p@ss"] {
            assert!(!db.label().contains(leak), "{}", db.label());
        }
        assert_eq!(
            db.scrub("login as sync with p@ss:w@rd refused; p%40ss%3Aw%40rd"),
            "login as sync with *** refused; ***"
        );
    }

    #[test]
    fn the_old_first_at_split_would_have_leaked() {
        // Splitting at the first `@` took `sync:p` as the user information and printed
        // `ss:w@rd@db.example…` as the host.
        let db = DbSpec::parse("postgresql://u:a@b@host/db");
        assert_eq!(db.label(), "postgresql://u:***@host/db");
        assert_eq!(db.scrub("password a@b"), "password ***");
    }

    #[test]
    fn urls_without_passwords_and_paths_are_shown_as_they_are() {
        for plain in [
            "postgres://sync@localhost/app",
            "project-sync.db",
            "/tmp/a@b:c.db",
            "sqlite:///tmp/x.db",
            "sqlite:relative.db",
        ] {
            let db = DbSpec::parse(plain);
            assert_eq!(db.label(), plain);
            assert_eq!(db.scrub("anything"), "anything");
        }
        assert_eq!(*DbSpec::parse("/tmp/a@b:c.db").kind(), DbKind::Sqlite);
        assert_eq!(*DbSpec::parse("sqlite:relative.db").kind(), DbKind::Sqlite);
    }

    #[test]
    fn other_schemes_are_named_but_never_their_passwords() {
        let db = DbSpec::parse("mysql://root:hunter2@db/app");
        assert_eq!(*db.kind(), DbKind::Other("mysql".into()));
        assert_eq!(db.label(), "mysql://root:***@db/app");
        assert_eq!(db.scrub("hunter2"), "***");
    }

    #[test]
    fn unparseable_urls_hide_the_user_information() {
        let db = DbSpec::parse("postgres://us er:se cret@[bad/app");
        assert!(!db.label().contains("se cret"), "{}", db.label());
        assert_eq!(db.scrub("x se cret y"), "x *** y");
    }

    #[test]
    fn debug_never_shows_the_password() {
        let db = DbSpec::parse(URL);
        let debug = format!("{db:?}");
        assert!(
            !debug.contains("p@ss") && !debug.contains("w@rd"),
            "{debug}"
        );
    }
}
