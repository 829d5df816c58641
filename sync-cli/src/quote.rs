//! Paths as git prints them: C-style quoting of unusual paths (`core.quotePath=true`).

use std::fmt::Write as _;

/// Whether git quotes a path containing `byte`: `"`, `\`, control characters, DEL, and
/// every byte of a non-ASCII character.
fn must_quote(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\' || byte >= 0x7f
}

/// `path` as `git ls-files` and `git ls-tree` print it: as it is when every byte is
/// printable ASCII other than `"` and `\`; otherwise in double quotes with `\a \b \t \n
/// \v \f \r \" \\` and three-digit octal escapes for the other bytes (UTF-8 included,
/// byte by byte).
pub(crate) fn quote_path(path: &[u8]) -> String {
    if !path.iter().copied().any(must_quote) {
        // Printable ASCII only, hence UTF-8.
        return String::from_utf8_lossy(path).into_owned();
    }
    let mut out = String::with_capacity(path.len() + 8);
    out.push('"');
    for &b in path {
        let escaped = match b {
            0x07 => "\\a",
            0x08 => "\\b",
            b'\t' => "\\t",
            b'\n' => "\\n",
            0x0b => "\\v",
            0x0c => "\\f",
            b'\r' => "\\r",
            b'"' => "\\\"",
            b'\\' => "\\\\",
            _ if must_quote(b) => {
                let _ = write!(out, "\\{b:03o}");
                continue;
            }
            _ => {
                out.push(char::from(b));
                continue;
            }
        };
        out.push_str(escaped);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::quote_path;

    #[test]
    fn plain_paths_are_left_alone() {
        for p in [
            "src/lib.rs",
            "dir with spaces/file name.txt",
            "-dash",
            "a'b$c*?",
        ] {
            assert_eq!(quote_path(p.as_bytes()), p);
        }
    }

    #[test]
    fn unusual_paths_are_quoted_like_git() {
        assert_eq!(quote_path(b"a\nb"), r#""a\nb""#);
        assert_eq!(quote_path(b"tab\there"), r#""tab\there""#);
        assert_eq!(quote_path(b"say \"hi\""), r#""say \"hi\"""#);
        assert_eq!(quote_path(b"back\\slash"), r#""back\\slash""#);
        assert_eq!(
            quote_path(b"\x01\x07\x08\x0b\x0c\r\x7f"),
            r#""\001\a\b\v\f\r\177""#
        );
        assert_eq!(quote_path("héllo".as_bytes()), r#""h\303\251llo""#);
        assert_eq!(quote_path(b"latin1-\xe9"), r#""latin1-\351""#);
    }
}
