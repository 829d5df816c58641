//! The grammar crates this build parses with, and their versions: part of the
//! [`SyntaxChunker`](crate::SyntaxChunker)'s id, so that a grammar upgrade re-extracts.

/// `(crate, version, enabled)` of the tree-sitter runtime and of every grammar crate. A unit
/// test compares the versions with the workspace's `Cargo.lock`: upgrading a grammar without
/// updating this table fails the tests.
pub(crate) const GRAMMARS: &[(&str, &str, bool)] = &[
    ("tree-sitter", "0.26.13", true),
    ("tree-sitter-rust", "0.24.2", cfg!(feature = "rust")),
    ("tree-sitter-python", "0.25.0", cfg!(feature = "python")),
    (
        "tree-sitter-javascript",
        "0.25.0",
        cfg!(feature = "javascript"),
    ),
    (
        "tree-sitter-typescript",
        "0.23.2",
        cfg!(feature = "typescript"),
    ),
    ("tree-sitter-go", "0.25.0", cfg!(feature = "go")),
    ("tree-sitter-java", "0.23.5", cfg!(feature = "java")),
    ("tree-sitter-c", "0.24.2", cfg!(feature = "c")),
    ("tree-sitter-cpp", "0.23.4", cfg!(feature = "cpp")),
    ("tree-sitter-c-sharp", "0.23.5", cfg!(feature = "csharp")),
    ("tree-sitter-php", "0.25.1", cfg!(feature = "php")),
    ("tree-sitter-ruby", "0.23.1", cfg!(feature = "ruby")),
];

/// A short, stable digest of the enabled grammars and their versions (16 hex digits).
pub(crate) fn grammar_digest(table: &[(&str, &str, bool)]) -> String {
    let mut h = crate::hash::Fnv::new();
    for (name, version, enabled) in table {
        if *enabled {
            h.write(name.as_bytes());
            h.write(b"@");
            h.write(version.as_bytes());
            h.write(b";");
        }
    }
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `name -> version` of every package in a `Cargo.lock`.
    fn locked(lock: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut name = None;
        for line in lock.lines() {
            if let Some(v) = line.strip_prefix("name = ") {
                name = Some(v.trim_matches('"').to_owned());
            } else if let Some(v) = line.strip_prefix("version = ")
                && let Some(n) = name.take()
            {
                out.push((n, v.trim_matches('"').to_owned()));
            }
        }
        out
    }

    #[test]
    fn the_grammar_table_matches_the_workspace_lock_file() {
        let lock = locked(include_str!("../../Cargo.lock"));
        for (name, version, _) in GRAMMARS {
            let versions: Vec<_> = lock
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            assert_eq!(
                versions,
                [*version],
                "{name}: Cargo.lock has {versions:?}; update GRAMMARS in sync-extract/src/grammars.rs"
            );
        }
    }

    #[test]
    fn the_digest_changes_with_any_grammar_version() {
        let base = grammar_digest(GRAMMARS);
        assert_eq!(base.len(), 16);
        let mut bumped = GRAMMARS.to_vec();
        bumped[1].1 = "99.0.0";
        assert_ne!(grammar_digest(&bumped), base);
        let mut disabled = GRAMMARS.to_vec();
        disabled[2].2 = !disabled[2].2;
        assert_ne!(grammar_digest(&disabled), base);
    }
}
