//! Which files are indexed, and which of them get memory entries.

use std::fmt;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::{EntryKind, Error, RepoPath, SkipReason, TreeEntry};

/// How many leading bytes [`FilePolicy::is_binary`] inspects, as git does.
pub const BINARY_SNIFF_LEN: usize = 8000;

/// The default maximum size of a file whose content is fetched: 1 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1 << 20;

/// Which paths of a tree are indexed (include/exclude globs) and which indexed files get
/// memory entries (size limit, binary sniff, symlinks).
///
/// Paths outside the globs are not indexed at all. Indexed files that are too large,
/// binary or symbolic links stay in the index with their [`SkipReason`] and have no
/// entries, so the next sync does not fetch them again.
///
/// Globs match the whole path from the repository root with
/// [`globset`](https://docs.rs/globset) syntax: `*` matches within and across `/`,
/// `**/` any number of directories, `{a,b}` alternatives. With no include glob every path
/// is included; an exclude glob always wins.
///
/// ```
/// use sync_core::{FilePolicy, RepoPath};
/// let policy = FilePolicy::builder()
///     .include("src/**")
///     .exclude("**/*.lock")
///     .max_file_size(256 * 1024)
///     .build()?;
/// assert!(policy.admits(&RepoPath::new("src/main.rs")?));
/// assert!(!policy.admits(&RepoPath::new("src/Cargo.lock")?));
/// assert!(!policy.admits(&RepoPath::new("README.md")?));
/// # Ok::<(), sync_core::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct FilePolicy {
    spec: PolicySpec,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

/// The serializable description of a [`FilePolicy`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySpec {
    /// Globs a path must match one of to be indexed; empty means every path.
    #[serde(default)]
    pub include: Vec<String>,
    /// Globs that keep a path out of the index.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Files larger than this are indexed without entries and never fetched.
    pub max_file_size: u64,
}

impl Default for PolicySpec {
    fn default() -> Self {
        Self {
            include: Vec::new(),
            exclude: Vec::new(),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
        }
    }
}

impl PolicySpec {
    /// Compiles the globs.
    pub fn build(self) -> Result<FilePolicy, Error> {
        Ok(FilePolicy {
            include: compile(&self.include, "include")?,
            exclude: compile(&self.exclude, "exclude")?,
            spec: self,
        })
    }
}

fn compile(globs: &[String], which: &str) -> Result<Option<GlobSet>, Error> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for g in globs {
        let glob = Glob::new(g).map_err(|e| {
            Error::invalid_input(format!("{which} glob `{g}` is not valid: {}", e.kind()))
        })?;
        set.add(glob);
    }
    set.build()
        .map(Some)
        .map_err(|e| Error::invalid_input(format!("{which} globs could not be compiled: {e}")))
}

impl fmt::Debug for FilePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.spec, f)
    }
}

impl FilePolicy {
    /// Starts a policy: every path, 1 MiB maximum file size.
    pub fn builder() -> PolicySpec {
        PolicySpec::default()
    }

    /// The policy's description.
    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// The maximum size of a file whose content is fetched.
    pub fn max_file_size(&self) -> u64 {
        self.spec.max_file_size
    }

    /// Whether `path` belongs in the index.
    pub fn admits(&self, path: &RepoPath) -> bool {
        let candidate = candidate(path);
        let included = self
            .include
            .as_ref()
            .is_none_or(|set| set.is_match_candidate(&candidate));
        included
            && !self
                .exclude
                .as_ref()
                .is_some_and(|set| set.is_match_candidate(&candidate))
    }

    /// Why an indexed entry gets no memory entries, decided from the tree alone (before
    /// any content is fetched): symlinks and files over the size limit.
    pub fn skip_without_content(&self, entry: &TreeEntry) -> Option<SkipReason> {
        if entry.kind == EntryKind::Symlink {
            Some(SkipReason::Symlink)
        } else if entry.size > self.spec.max_file_size {
            Some(SkipReason::TooLarge)
        } else {
            None
        }
    }

    /// Git's binary test: a NUL byte in the first [`BINARY_SNIFF_LEN`] bytes.
    pub fn is_binary(data: &[u8]) -> bool {
        data[..data.len().min(BINARY_SNIFF_LEN)].contains(&0)
    }
}

impl PolicySpec {
    /// Adds an include glob.
    #[must_use]
    pub fn include(mut self, glob: impl Into<String>) -> Self {
        self.include.push(glob.into());
        self
    }

    /// Adds an exclude glob.
    #[must_use]
    pub fn exclude(mut self, glob: impl Into<String>) -> Self {
        self.exclude.push(glob.into());
        self
    }

    /// Sets the maximum size of a file whose content is fetched.
    #[must_use]
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = bytes;
        self
    }
}

#[cfg(unix)]
fn candidate(path: &RepoPath) -> globset::Candidate<'_> {
    use std::os::unix::ffi::OsStrExt;
    globset::Candidate::new(std::ffi::OsStr::from_bytes(path.as_bytes()))
}

#[cfg(not(unix))]
fn candidate(path: &RepoPath) -> globset::Candidate<'static> {
    globset::Candidate::new(std::path::PathBuf::from(
        path.to_string_lossy().into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BlobId;

    fn p(s: &str) -> RepoPath {
        RepoPath::new(s).unwrap()
    }

    #[test]
    fn default_admits_everything() {
        let policy = FilePolicy::default();
        assert!(policy.admits(&p("any/thing.bin")));
        assert_eq!(policy.max_file_size(), DEFAULT_MAX_FILE_SIZE);
    }

    #[test]
    fn include_then_exclude() {
        let policy = FilePolicy::builder()
            .include("*.rs")
            .include("docs/**")
            .exclude("**/generated/**")
            .build()
            .unwrap();
        assert!(policy.admits(&p("src/deep/x.rs")), "* crosses /");
        assert!(policy.admits(&p("docs/a.md")));
        assert!(!policy.admits(&p("README.md")));
        assert!(!policy.admits(&p("src/generated/x.rs")));
    }

    #[test]
    fn invalid_glob_is_a_clear_error() {
        let err = FilePolicy::builder().include("src/[").build().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("include glob `src/[`"), "{err}");
    }

    #[test]
    fn non_utf8_paths_match_globs() {
        let policy = FilePolicy::builder().exclude("*.bin").build().unwrap();
        assert!(!policy.admits(&RepoPath::new(b"x\xff.bin").unwrap()));
        assert!(policy.admits(&RepoPath::new(b"x\xff.txt").unwrap()));
    }

    #[test]
    fn skips_before_fetch_for_symlinks_and_large_files() {
        let policy = FilePolicy::builder().max_file_size(10).build().unwrap();
        let entry = |size, kind| TreeEntry::new(p("f"), BlobId::for_content(b""), size, kind);
        assert_eq!(
            policy.skip_without_content(&entry(10, EntryKind::File)),
            None
        );
        assert_eq!(
            policy.skip_without_content(&entry(11, EntryKind::Executable)),
            Some(SkipReason::TooLarge)
        );
        assert_eq!(
            policy.skip_without_content(&entry(1, EntryKind::Symlink)),
            Some(SkipReason::Symlink)
        );
    }

    #[test]
    fn binary_sniff_looks_at_first_8000_bytes_only() {
        assert!(!FilePolicy::is_binary(b"plain text\n"));
        assert!(FilePolicy::is_binary(b"PNG\0\x01"));
        let mut late = vec![b'a'; BINARY_SNIFF_LEN];
        late.push(0);
        assert!(!FilePolicy::is_binary(&late));
    }
}
