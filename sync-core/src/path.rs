//! Repository paths as git stores them: bytes, not necessarily UTF-8.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// A path inside a repository, relative to its root, `/`-separated, as raw bytes.
///
/// Git paths are byte strings; most are UTF-8 but not all. `RepoPath` keeps the bytes
/// exactly and orders by them, which is the order of `git ls-tree -r`. A valid path is
/// non-empty, has no NUL byte, no leading or trailing `/`, no empty, `.` or `..`
/// component.
///
/// It serializes as a JSON string when it is UTF-8 and as an array of bytes otherwise, so
/// no path is ever altered on its way through events or storage.
///
/// ```
/// use sync_core::RepoPath;
/// let p = RepoPath::new("src/lib.rs")?;
/// assert_eq!(p.file_name(), b"lib.rs");
/// assert!(RepoPath::new("../etc/passwd").is_err());
/// # Ok::<(), sync_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoPath(Box<[u8]>);

impl RepoPath {
    /// Validates and wraps a path.
    pub fn new(path: impl AsRef<[u8]>) -> Result<Self, Error> {
        let bytes = path.as_ref();
        validate(bytes)?;
        Ok(Self(bytes.into()))
    }

    /// Validates and wraps an owned byte vector without copying it.
    pub fn from_vec(bytes: Vec<u8>) -> Result<Self, Error> {
        validate(&bytes)?;
        Ok(Self(bytes.into_boxed_slice()))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path as UTF-8, if it is.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The path as text, with invalid UTF-8 replaced by `U+FFFD`; for display only.
    pub fn to_string_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    /// The last component.
    pub fn file_name(&self) -> &[u8] {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// Whether `self` is `prefix` or lies below it (component-wise, so `src` is a prefix of
    /// `src/a.rs` but not of `srcx`).
    pub fn starts_with(&self, prefix: &[u8]) -> bool {
        let prefix = prefix.strip_suffix(b"/").unwrap_or(prefix);
        if prefix.is_empty() {
            return true;
        }
        self.0.starts_with(prefix) && (self.0.len() == prefix.len() || self.0[prefix.len()] == b'/')
    }

    /// Heap bytes held by this path (for memory accounting).
    pub fn heap_size(&self) -> usize {
        self.0.len()
    }
}

fn validate(bytes: &[u8]) -> Result<(), Error> {
    let problem = if bytes.is_empty() {
        Some("it is empty")
    } else if bytes.contains(&0) {
        Some("it contains a NUL byte")
    } else if bytes.starts_with(b"/") {
        Some("it starts with `/`; repository paths are relative")
    } else if bytes.ends_with(b"/") {
        Some("it ends with `/`")
    } else if bytes
        .split(|&b| b == b'/')
        .any(|c| c.is_empty() || c == b"." || c == b"..")
    {
        Some("it has an empty, `.` or `..` component")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(why) => Err(Error::invalid_input(format!(
            "`{}` is not a valid repository path: {why}",
            String::from_utf8_lossy(bytes).escape_debug()
        ))),
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_lossy())
    }
}

impl fmt::Debug for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_str() {
            Some(s) => fmt::Debug::fmt(s, f),
            None => write!(f, "b{:?}", self.to_string_lossy()),
        }
    }
}

impl TryFrom<&str> for RepoPath {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for RepoPath {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::from_vec(s.into_bytes())
    }
}

impl AsRef<[u8]> for RepoPath {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for RepoPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.to_str() {
            Some(text) => s.serialize_str(text),
            None => s.collect_seq(self.0.iter()),
        }
    }
}

impl<'de> Deserialize<'de> for RepoPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PathVisitor;

        impl<'de> Visitor<'de> for PathVisitor {
            type Value = RepoPath;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a repository path as a string or an array of bytes")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RepoPath, E> {
                RepoPath::new(v).map_err(E::custom)
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RepoPath, E> {
                RepoPath::new(v).map_err(E::custom)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RepoPath, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element::<u8>()? {
                    bytes.push(b);
                }
                RepoPath::from_vec(bytes).map_err(de::Error::custom)
            }
        }

        d.deserialize_any(PathVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unsafe_paths_with_reason() {
        for (bad, why) in [
            ("", "empty"),
            ("/abs", "starts with"),
            ("dir/", "ends with"),
            ("a//b", "component"),
            ("a/./b", "component"),
            ("a/../b", "component"),
            ("..", "component"),
        ] {
            let err = RepoPath::new(bad).unwrap_err();
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
        }
        assert!(RepoPath::new(b"a\0b").is_err());
    }

    #[test]
    fn accepts_odd_but_legal_names() {
        for ok in [
            "-leading-dash",
            "with space/ünïcødé.txt",
            ".hidden",
            "a/.b/..c",
        ] {
            assert_eq!(RepoPath::new(ok).unwrap().to_str(), Some(ok));
        }
    }

    #[test]
    fn orders_by_bytes_like_git_ls_tree() {
        let mut paths: Vec<RepoPath> = ["a/b", "a.txt", "a-b", "B", "a"]
            .iter()
            .map(|p| RepoPath::new(p).unwrap())
            .collect();
        paths.sort();
        let got: Vec<_> = paths.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(got, ["B", "a", "a-b", "a.txt", "a/b"]);
    }

    #[test]
    fn prefix_is_component_wise() {
        let p = RepoPath::new("src/lib.rs").unwrap();
        assert!(p.starts_with(b"src"));
        assert!(p.starts_with(b"src/"));
        assert!(p.starts_with(b""));
        assert!(p.starts_with(b"src/lib.rs"));
        assert!(!p.starts_with(b"sr"));
        assert!(!p.starts_with(b"src/lib"));
    }

    #[test]
    fn serde_keeps_non_utf8_bytes() {
        let utf8 = RepoPath::new("dir/naïve.rs").unwrap();
        assert_eq!(serde_json::to_string(&utf8).unwrap(), "\"dir/naïve.rs\"");
        let raw = RepoPath::new(b"bad\xff.bin").unwrap();
        let json = serde_json::to_string(&raw).unwrap();
        assert_eq!(json, "[98,97,100,255,46,98,105,110]");
        assert_eq!(serde_json::from_str::<RepoPath>(&json).unwrap(), raw);
        assert!(serde_json::from_str::<RepoPath>("\"../x\"").is_err());
    }
}
