//! Identifiers: git object ids, content hashes and run ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

macro_rules! hex_id {
    ($(#[$meta:meta])* $name:ident, $len:literal, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $len]);

        impl $name {
            /// The id's length in bytes.
            pub const LEN: usize = $len;

            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// Parses raw bytes, failing unless there are exactly [`Self::LEN`] of them.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
                <[u8; $len]>::try_from(bytes).map(Self).map_err(|_| {
                    Error::invalid_input(format!(
                        "a {} must be {} bytes, got {}",
                        $what,
                        $len,
                        bytes.len()
                    ))
                })
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lowercase hex, as git prints it.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Error> {
                let mut bytes = [0u8; $len];
                hex::decode_to_slice(s, &mut bytes).map_err(|_| {
                    Error::invalid_input(format!(
                        "`{}` is not a {}: expected {} hex digits",
                        s.escape_debug(),
                        $what,
                        $len * 2
                    ))
                })?;
                Ok(Self(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut buf = [0u8; $len * 2];
                hex::encode_to_slice(self.0, &mut buf).expect("buffer is twice the id length");
                f.write_str(std::str::from_utf8(&buf).expect("hex is ASCII"))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(
    /// The id of a git blob: the SHA-1 of `blob <len>\0<content>`, as in `git ls-tree`.
    ///
    /// ```
    /// use sync_core::BlobId;
    /// let id = BlobId::for_content(b"");
    /// assert_eq!(id.to_string(), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    /// ```
    BlobId, 20, "git blob id"
);

hex_id!(
    /// The id of a git commit.
    CommitId, 20, "git commit id"
);

hex_id!(
    /// The BLAKE3 hash of a memory entry's text. Embeddings are keyed by it, so text that
    /// did not change, or only moved, is never embedded twice.
    ContentHash, 32, "content hash"
);

impl BlobId {
    /// Hashes content the way git does for a blob: SHA-1 over `blob <len>\0` and the bytes.
    pub fn for_content(data: &[u8]) -> Self {
        use sha1::Digest as _;
        let mut hasher = sha1::Sha1::new();
        hasher.update(format!("blob {}\0", data.len()).as_bytes());
        hasher.update(data);
        Self(hasher.finalize().into())
    }
}

impl ContentHash {
    /// Hashes a text.
    pub fn of(text: &str) -> Self {
        Self(*blake3::hash(text.as_bytes()).as_bytes())
    }
}

/// The id of a run ([`SyncRecord`](crate::SyncRecord)), assigned by the store.
///
/// Ids grow over time within a store; runs of one repository are ordered by their place in
/// the history chain, not by id arithmetic.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SyncId(pub i64);

impl fmt::Display for SyncId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for SyncId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SyncId({})", self.0)
    }
}

impl FromStr for SyncId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        s.trim()
            .parse()
            .map(SyncId)
            .map_err(|_| Error::invalid_input(format!("`{s}` is not a sync id (a whole number)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_id_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            BlobId::for_content(b"hello\n").to_string(),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let id: CommitId = "0123456789abcdef0123456789abcdef01234567".parse().unwrap();
        assert_eq!(id.to_hex(), "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(
            "0123456789ABCDEF0123456789ABCDEF01234567"
                .parse::<CommitId>()
                .unwrap(),
            id
        );
        let err = "abc".parse::<BlobId>().unwrap_err();
        assert!(err.to_string().contains("40 hex digits"), "{err}");
        assert!(BlobId::from_slice(&[0; 19]).is_err());
    }

    #[test]
    fn serde_as_hex_string() {
        let id = BlobId::for_content(b"x");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<BlobId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<BlobId>("\"zz\"").is_err());
    }

    #[test]
    fn sync_id_parses_with_clear_error() {
        assert_eq!("42".parse::<SyncId>().unwrap(), SyncId(42));
        assert!(
            "x".parse::<SyncId>()
                .unwrap_err()
                .to_string()
                .contains("not a sync id")
        );
    }
}
