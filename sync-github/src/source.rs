//! `GitHubSource`: the `RepoSource` over GitHub's REST API.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use futures::stream::{self, BoxStream, FuturesUnordered, StreamExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sync_core::{
    Blob, BlobId, Branch, CommitId, EntryKind, Error, ErrorKind, FilePolicy, RepoPath, RepoSource,
    Tree, TreeChange, TreeChanges, TreeEntry,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::{Client, ClientConfig, RateLimit, Request, RequestStats};
use crate::config::{
    ApiUrl, GitHubSourceBuilder, RetryPolicy, TOKEN_ENV, TokenSetting, parse_slug, validate_name,
};
use crate::error::{ErrorContext, Target};
use crate::tarball::{self, TarStats, Wanted};

/// GitHub's JSON media type.
const JSON: &str = "application/vnd.github+json";
/// The blob API's raw media type: the blob's bytes as they are.
const RAW: &str = "application/vnd.github.raw+json";
/// Branches asked for per page (GitHub's maximum).
const PER_PAGE: u32 = 100;
/// Pages followed at most, against a server whose links loop.
const MAX_PAGES: usize = 10_000;
/// Tree listings [`RepoSource::changes`] makes at most before it leaves the work to one
/// recursive listing of the whole tree (which costs one request, or a few).
const MAX_DIFF_LISTINGS: usize = 128;

/// Characters escaped in one segment of a URL path: all but RFC 3986's unreserved ones.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A [`RepoSource`] reading a repository through GitHub's REST API (github.com, GitHub
/// Enterprise Server, or any server speaking the same API).
///
/// * **Trees** come from one recursive `git/trees` request; when GitHub truncates it
///   (over 100,000 entries or 7 MB) the tree is walked subtree by subtree, at most
///   [`max_in_flight`](GitHubSourceBuilder::max_in_flight) requests at once, so the
///   result is always complete. Submodules are counted, not indexed. Sizes come with the
///   listing, so [`filtered_tree`](RepoSource::filtered_tree) (the provided method) reads
///   nothing of the paths it leaves out.
/// * **Changes** between two commits ([`changes`](RepoSource::changes)), when
///   [`tree_diff`](GitHubSourceBuilder::tree_diff) is on, are found by listing both commits' trees level by level (`git/trees/{sha}`, not recursive) and
///   descending only into subtrees whose ids differ; a subtree on one side only is listed
///   recursively. Sizes come with the listings. More than 128 listings, a recursive
///   listing GitHub truncates, or a base commit GitHub no longer has (`404`) make the sync
///   list the whole tree instead. (The compare API is not used: its `files` carry neither
///   modes nor sizes and stop at 300, and it compares from the merge base.)
/// * **Contents** come from the blob API (one request per blob) when few are wanted, and
///   from one streamed tarball of the commit when more than
///   [`tarball_threshold`](GitHubSourceBuilder::tarball_threshold) are. Paths the tarball
///   lacks or alters (`export-ignore`, `export-subst`) are fetched through the blob API.
///   Every blob is re-hashed as git does and checked against the tree: a mismatch is
///   [`Error::Corrupt`], never returned.
/// * **Branch heads** and the repository are asked for with the ETag of the last answer,
///   so an unchanged head costs one `304`, which GitHub does not count against the rate
///   limit.
/// * **Rate limits** are waited out (reported as
///   [`SourceNotice::RateLimited`](sync_core::SourceNotice::RateLimited)) up to
///   [`max_rate_limit_wait`](GitHubSourceBuilder::max_rate_limit_wait), then fail with
///   [`Error::RateLimited`] naming the reset; 5xx answers and connection errors are retried
///   with exponential backoff and jitter (reported as
///   [`SourceNotice::Retrying`](sync_core::SourceNotice::Retrying)).
///
/// The token is never printed: not by `Debug`, errors, events or logs.
///
/// Building a source makes no request and needs no runtime. Its HTTP client is created on
/// the first request, on the Tokio runtime that request runs on; use the source within
/// that runtime.
pub struct GitHubSource {
    owner: String,
    name: String,
    api: ApiUrl,
    client: Client,
    max_in_flight: usize,
    tarball_threshold: usize,
    tree_diff: bool,
    retry: RetryPolicy,
    has_token: bool,
}

impl fmt::Debug for GitHubSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubSource")
            .field("repo", &format_args!("{}/{}", self.owner, self.name))
            .field("api_url", &self.api.base)
            .field("token", &if self.has_token { "set" } else { "none" })
            .field("max_in_flight", &self.max_in_flight)
            .field("tarball_threshold", &self.tarball_threshold)
            .finish_non_exhaustive()
    }
}

impl GitHubSource {
    /// A builder for the repository `owner/name`.
    pub fn builder(owner: impl Into<String>, name: impl Into<String>) -> GitHubSourceBuilder {
        GitHubSourceBuilder::new(owner, name)
    }

    /// A builder for a repository written `owner/name`, `github:owner/name` or
    /// `https://github.com/owner/name`.
    ///
    /// ```
    /// let source = sync_github::GitHubSource::from_slug("github:rust-lang/cargo")?
    ///     .anonymous()
    ///     .build()?;
    /// assert_eq!(source.repo(), "rust-lang/cargo");
    /// # Ok::<(), sync_core::Error>(())
    /// ```
    pub fn from_slug(slug: &str) -> Result<GitHubSourceBuilder, Error> {
        let (owner, name) = parse_slug(slug)?;
        Ok(GitHubSourceBuilder::new(owner, name))
    }

    pub(crate) fn from_builder(b: GitHubSourceBuilder) -> Result<Self, Error> {
        validate_name("owner", &b.owner)?;
        validate_name("repository name", &b.name)?;
        let api = ApiUrl::parse(&b.api_url)?;
        let token = match b.token {
            TokenSetting::Given(t) => Some(t),
            TokenSetting::Anonymous => None,
            TokenSetting::Env => std::env::var(TOKEN_ENV)
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .map(Into::into),
        };
        let has_token = token.is_some();
        let ctx = ErrorContext {
            repo: format!("{}/{}", b.owner, b.name),
            api: api.base.clone(),
            has_token,
        };
        let client = Client::new(ClientConfig {
            api: api.clone(),
            ctx,
            token,
            max_in_flight: b.max_in_flight,
            retry: b.retry,
            max_rate_limit_wait: b.max_rate_limit_wait,
            connect_timeout: b.connect_timeout,
            read_timeout: b.read_timeout,
            cache: b
                .cache
                .unwrap_or_else(|| std::sync::Arc::new(sync_core::MemoryResponseCache::new())),
        })?;
        Ok(Self {
            owner: b.owner,
            name: b.name,
            api,
            client,
            max_in_flight: b.max_in_flight.max(1),
            tarball_threshold: b.tarball_threshold,
            tree_diff: b.tree_diff,
            retry: b.retry,
            has_token,
        })
    }

    /// `owner/name`.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// The API base URL requests go to.
    pub fn api_url(&self) -> &str {
        &self.api.base
    }

    /// Whether requests carry a token.
    pub fn has_token(&self) -> bool {
        self.has_token
    }

    /// Counts of the requests made so far.
    pub fn stats(&self) -> RequestStats {
        self.client.stats()
    }

    /// What the last answer said of the rate limit, if it said anything.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.client.rate_limit()
    }

    fn repo_path(&self) -> String {
        format!("/repos/{}/{}", self.owner, self.name)
    }

    fn parse<T: DeserializeOwned>(&self, target: &Target, body: &[u8]) -> Result<T, Error> {
        serde_json::from_slice(body).map_err(|e| self.client.ctx.malformed(target, e))
    }

    async fn repo_info(&self) -> Result<RepoInfo, Error> {
        let target = Target::Repo;
        let req = Request {
            path: self.repo_path(),
            accept: JSON,
            target: &target,
        };
        let full = self.client.get(&req, true).await?;
        self.parse(&target, &full.body)
    }

    async fn list_tree(
        &self,
        sha: &str,
        recursive: bool,
        target: &Target,
    ) -> Result<TreeListing, Error> {
        let req = Request {
            path: format!(
                "{}/git/trees/{sha}{}",
                self.repo_path(),
                if recursive { "?recursive=1" } else { "" }
            ),
            accept: JSON,
            target,
        };
        let full = self.client.get(&req, false).await?;
        self.parse(target, &full.body)
    }

    /// Walks a tree whose recursive listing was truncated: each subtree is asked for
    /// recursively, and only those GitHub truncates too are listed level by level.
    async fn walk(&self, commit: &CommitId, flat: &mut Flat) -> Result<(), Error> {
        let mut queue = VecDeque::from([Job {
            prefix: String::new(),
            sha: commit.to_string(),
            recursive: false,
        }]);
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < self.max_in_flight {
                let Some(job) = queue.pop_front() else { break };
                running.push(async move {
                    let target = if job.prefix.is_empty() {
                        Target::Tree(*commit)
                    } else {
                        Target::Subtree(job.prefix.clone())
                    };
                    let listing = self.list_tree(&job.sha, job.recursive, &target).await;
                    (job, target, listing)
                });
            }
            let Some((job, target, listing)) = running.next().await else {
                return Ok(());
            };
            let listing = listing?;
            match (job.recursive, listing.truncated) {
                (true, false) => {
                    flat.absorb(&self.client.ctx, &target, &job.prefix, listing, None)?;
                }
                (true, true) => queue.push_back(Job {
                    recursive: false,
                    ..job
                }),
                (false, false) => {
                    let mut subtrees = Vec::new();
                    flat.absorb(
                        &self.client.ctx,
                        &target,
                        &job.prefix,
                        listing,
                        Some(&mut subtrees),
                    )?;
                    queue.extend(subtrees.into_iter().map(|(prefix, sha)| Job {
                        prefix,
                        sha,
                        recursive: true,
                    }));
                }
                (false, true) => {
                    return Err(Error::unsupported(format!(
                        "{target} of `{}` has more entries than GitHub lists for one directory; sync it from a local clone with the git source instead",
                        self.repo()
                    )));
                }
            }
        }
    }

    /// The tree-id descent behind [`RepoSource::changes`]; `Err` with a reason when it
    /// gives up for a full listing.
    async fn descend(
        &self,
        base: &CommitId,
        head: &CommitId,
        policy: &FilePolicy,
    ) -> Result<Result<Vec<TreeChange>, String>, Error> {
        let (base_target, head_target) = (Target::Tree(*base), Target::Tree(*head));
        let (base_sha, head_sha) = (base.to_string(), head.to_string());
        let (old, new) = futures::join!(
            self.list_tree(&base_sha, false, &base_target),
            self.list_tree(&head_sha, false, &head_target)
        );
        let new = new?;
        let old = match old {
            Ok(old) => old,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(Err(format!(
                    "the last synced commit {base} is no longer in `{}` on GitHub (a force push?); listing the whole tree",
                    self.repo()
                )));
            }
            Err(e) => return Err(e),
        };
        let ctx = &self.client.ctx;
        let mut listings = 2;
        let mut changes = Vec::new();
        let mut level = vec![(String::new(), base_target, old, head_target, new)];
        while !level.is_empty() {
            let mut jobs = Vec::new();
            for (prefix, old_target, old, new_target, new) in level.drain(..) {
                let mut names: BTreeMap<String, (Option<TreeItem>, Option<TreeItem>)> =
                    BTreeMap::new();
                for item in old.tree {
                    let name = item.path.clone();
                    names.entry(name).or_default().0 = Some(item);
                }
                for item in new.tree {
                    let name = item.path.clone();
                    names.entry(name).or_default().1 = Some(item);
                }
                for (name, (before, after)) in names {
                    let path = join(&prefix, &name);
                    let is_tree =
                        |i: &Option<TreeItem>| i.as_ref().is_some_and(|i| i.kind == "tree");
                    let (old_tree, new_tree) = (is_tree(&before), is_tree(&after));
                    if old_tree && new_tree {
                        let (Some(o), Some(n)) = (before, after) else {
                            continue;
                        };
                        if o.sha != n.sha {
                            jobs.push(DiffJob::Both(path, o.sha, n.sha));
                        }
                        continue;
                    }
                    let before = match before {
                        Some(o) if old_tree => {
                            jobs.push(DiffJob::Old(path.clone(), o.sha));
                            None
                        }
                        Some(o) => diff_item(ctx, &old_target, &path, &o, None)?,
                        None => None,
                    };
                    let after = match after {
                        Some(n) if new_tree => {
                            jobs.push(DiffJob::New(path.clone(), n.sha));
                            None
                        }
                        Some(n) => diff_item(ctx, &new_target, &path, &n, Some(policy))?,
                        None => None,
                    };
                    if !same_item(before.as_ref(), after.as_ref()) {
                        changes.push(TreeChange {
                            path: repo_path(ctx, &new_target, path)?,
                            before,
                            after,
                        });
                    }
                }
            }
            listings += jobs.iter().map(DiffJob::listings).sum::<usize>();
            if listings > MAX_DIFF_LISTINGS {
                return Ok(Err(format!(
                    "more than {MAX_DIFF_LISTINGS} directories of `{}` changed since commit {base}; one listing of the whole tree is cheaper",
                    self.repo()
                )));
            }
            let mut done = stream::iter(jobs)
                .map(|job| self.run_diff_job(job))
                .buffer_unordered(self.max_in_flight);
            while let Some(result) = done.next().await {
                match result? {
                    DiffDone::Both(prefix, old_target, old, new_target, new) => {
                        level.push((prefix, old_target, old, new_target, new));
                    }
                    DiffDone::OneSide(prefix, target, listing, new_side) => {
                        if listing.truncated {
                            return Ok(Err(format!(
                                "GitHub truncated the listing of {target} of `{}`; listing the whole tree",
                                self.repo()
                            )));
                        }
                        for item in listing.tree {
                            let path = join(&prefix, &item.path);
                            let policy = new_side.then_some(policy);
                            let Some(found) = diff_item(ctx, &target, &path, &item, policy)? else {
                                continue;
                            };
                            let (before, after) = if new_side {
                                (None, Some(found))
                            } else {
                                (Some(found), None)
                            };
                            changes.push(TreeChange {
                                path: repo_path(ctx, &target, path)?,
                                before,
                                after,
                            });
                        }
                    }
                }
            }
        }
        Ok(Ok(changes))
    }

    async fn run_diff_job(&self, job: DiffJob) -> Result<DiffDone, Error> {
        match job {
            DiffJob::Both(prefix, old, new) => {
                let target = Target::Subtree(prefix.clone());
                let (o, n) = futures::join!(
                    self.list_tree(&old, false, &target),
                    self.list_tree(&new, false, &target)
                );
                Ok(DiffDone::Both(prefix, target.clone(), o?, target, n?))
            }
            DiffJob::Old(prefix, sha) => {
                let target = Target::Subtree(prefix.clone());
                let listing = self.list_tree(&sha, true, &target).await?;
                Ok(DiffDone::OneSide(prefix, target, listing, false))
            }
            DiffJob::New(prefix, sha) => {
                let target = Target::Subtree(prefix.clone());
                let listing = self.list_tree(&sha, true, &target).await?;
                Ok(DiffDone::OneSide(prefix, target, listing, true))
            }
        }
    }

    async fn fetch_blob(&self, id: BlobId, path: String) -> Result<Bytes, Error> {
        let target = Target::Blob(id, path.clone());
        let req = Request {
            path: format!("{}/git/blobs/{id}", self.repo_path()),
            accept: RAW,
            target: &target,
        };
        let body = self.client.get(&req, false).await?.body;
        if BlobId::for_content(&body) == id {
            return Ok(body);
        }
        // A server that ignores the raw media type answers with base64 JSON.
        if let Some(decoded) = decode_json_blob(&body)
            && BlobId::for_content(&decoded) == id
        {
            return Ok(decoded);
        }
        Err(Error::corrupt(format!(
            "the content GitHub sent for `{path}` in `{}` ({} bytes, hashing to {}) is not blob {id} as the tree says; nothing was stored",
            self.repo(),
            body.len(),
            BlobId::for_content(&body)
        )))
    }
}

/// A branch name git would accept (`git check-ref-format --branch`), so it can be put in
/// a URL path without changing its meaning.
fn validate_branch(branch: &str) -> Result<(), Error> {
    let bad = branch.is_empty()
        || branch == "@"
        || branch.starts_with('/')
        || branch.ends_with('/')
        || branch.ends_with('.')
        || branch.contains("..")
        || branch.contains("@{")
        || branch.contains("//")
        || branch
            .split('/')
            .any(|c| c.starts_with('.') || c.ends_with(".lock"))
        || branch
            .chars()
            .any(|c| c.is_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'));
    if bad {
        return Err(Error::invalid_input(format!(
            "`{}` is not a valid branch name",
            branch.escape_debug()
        )));
    }
    Ok(())
}

/// Percent-encodes each `/`-separated segment of a branch name, keeping the slashes.
fn encode_branch(branch: &str) -> String {
    branch
        .split('/')
        .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// The URL of the `rel="next"` link of a `Link` header.
fn next_link(header: &str) -> Option<&str> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>')?;
        let url = &rest[open + 1..close];
        let params_end = rest[close..].find('<').map_or(rest.len(), |n| close + n);
        let params = &rest[close + 1..params_end];
        if params.split(';').any(|p| {
            let p = p.trim().trim_end_matches(',').trim();
            p == "rel=\"next\"" || p == "rel=next"
        }) {
            return Some(url);
        }
        rest = &rest[params_end..];
    }
    None
}

fn decode_json_blob(body: &[u8]) -> Option<Bytes> {
    #[derive(Deserialize)]
    struct JsonBlob {
        content: String,
        encoding: String,
    }
    let blob: JsonBlob = serde_json::from_slice(body).ok()?;
    match blob.encoding.as_str() {
        "base64" => {
            let clean: Vec<u8> = blob
                .content
                .bytes()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(clean)
                .ok()
                .map(Bytes::from)
        }
        "utf-8" => Some(Bytes::from(blob.content)),
        _ => None,
    }
}

#[derive(Debug, Deserialize)]
struct RepoInfo {
    default_branch: String,
}

#[derive(Debug, Deserialize)]
struct BranchItem {
    name: String,
    commit: ShaRef,
}

#[derive(Debug, Deserialize)]
struct ShaRef {
    sha: String,
}

#[derive(Debug, Deserialize)]
struct RefInfo {
    #[serde(rename = "ref")]
    name: String,
    object: RefObject,
}

#[derive(Debug, Deserialize)]
struct RefObject {
    sha: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Deserialize)]
struct TreeListing {
    tree: Vec<TreeItem>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Debug, Deserialize)]
struct TreeItem {
    path: String,
    mode: String,
    #[serde(rename = "type")]
    kind: String,
    sha: String,
    size: Option<u64>,
}

struct Job {
    prefix: String,
    sha: String,
    recursive: bool,
}

/// A directory the tree-id descent lists next.
enum DiffJob {
    /// On both sides with different ids: both listed, one level.
    Both(String, String, String),
    /// Only in the older tree: listed recursively, everything removed.
    Old(String, String),
    /// Only in the newer tree: listed recursively, everything added.
    New(String, String),
}

impl DiffJob {
    fn listings(&self) -> usize {
        match self {
            Self::Both(..) => 2,
            Self::Old(..) | Self::New(..) => 1,
        }
    }
}

/// What a [`DiffJob`] listed.
enum DiffDone {
    Both(String, Target, TreeListing, Target, TreeListing),
    /// The prefix, the listing and whether it is of the newer tree.
    OneSide(String, Target, TreeListing, bool),
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}/{name}")
    }
}

fn repo_path(ctx: &ErrorContext, target: &Target, path: String) -> Result<RepoPath, Error> {
    RepoPath::from_vec(path.into_bytes()).map_err(|e| ctx.malformed(target, e))
}

/// The item a listed entry is (`None` for a tree). With `policy` (the newer side), an
/// admitted blob carries its size.
fn diff_item(
    ctx: &ErrorContext,
    target: &Target,
    path: &str,
    item: &TreeItem,
    policy: Option<&FilePolicy>,
) -> Result<Option<sync_core::TreeItem>, Error> {
    match item.kind.as_str() {
        "tree" => Ok(None),
        "commit" => Ok(Some(sync_core::TreeItem::Submodule)),
        "blob" => {
            let mode = u32::from_str_radix(&item.mode, 8).ok();
            let Some(kind) = mode.and_then(EntryKind::from_git_mode) else {
                return Err(ctx.malformed(
                    target,
                    format_args!("blob `{path}` has mode `{}`", item.mode),
                ));
            };
            let blob: BlobId = item.sha.parse().map_err(|e| ctx.malformed(target, e))?;
            let size = match policy {
                Some(policy) if policy.admits(&repo_path(ctx, target, path.to_owned())?) => {
                    Some(item.size.ok_or_else(|| {
                        ctx.malformed(target, format_args!("blob `{path}` has no size"))
                    })?)
                }
                _ => None,
            };
            Ok(Some(sync_core::TreeItem::Blob { blob, kind, size }))
        }
        other => Err(ctx.malformed(
            target,
            format_args!("`{path}` has the unknown type `{other}`"),
        )),
    }
}

/// Whether two items are the same blob of the same kind, both submodules, or both nothing.
fn same_item(a: Option<&sync_core::TreeItem>, b: Option<&sync_core::TreeItem>) -> bool {
    use sync_core::TreeItem as I;
    match (a, b) {
        (
            Some(I::Blob {
                blob: ab, kind: ak, ..
            }),
            Some(I::Blob {
                blob: bb, kind: bk, ..
            }),
        ) => ab == bb && ak == bk,
        (Some(I::Submodule), Some(I::Submodule)) | (None, None) => true,
        _ => false,
    }
}

/// A tree being flattened.
#[derive(Default)]
struct Flat {
    entries: Vec<TreeEntry>,
    submodules: u64,
}

impl Flat {
    /// Adds the blobs of a listing below `prefix`; subtrees go to `subtrees` when given
    /// (a level-by-level listing) and are skipped otherwise (a recursive one).
    fn absorb(
        &mut self,
        ctx: &ErrorContext,
        target: &Target,
        prefix: &str,
        listing: TreeListing,
        mut subtrees: Option<&mut Vec<(String, String)>>,
    ) -> Result<(), Error> {
        for item in listing.tree {
            let path = if prefix.is_empty() {
                item.path
            } else {
                format!("{prefix}/{}", item.path)
            };
            match item.kind.as_str() {
                "blob" => {
                    let mode = u32::from_str_radix(&item.mode, 8).ok();
                    let Some(kind) = mode.and_then(EntryKind::from_git_mode) else {
                        return Err(ctx.malformed(
                            target,
                            format_args!("blob `{path}` has mode `{}`", item.mode),
                        ));
                    };
                    let Some(size) = item.size else {
                        return Err(
                            ctx.malformed(target, format_args!("blob `{path}` has no size"))
                        );
                    };
                    let blob: BlobId = item.sha.parse().map_err(|e| ctx.malformed(target, e))?;
                    let path = RepoPath::from_vec(path.into_bytes())
                        .map_err(|e| ctx.malformed(target, e))?;
                    self.entries.push(TreeEntry::new(path, blob, size, kind));
                }
                "tree" => {
                    if let Some(subtrees) = subtrees.as_deref_mut() {
                        subtrees.push((path, item.sha));
                    }
                }
                "commit" => self.submodules += 1,
                other => {
                    return Err(ctx.malformed(
                        target,
                        format_args!("`{path}` has the unknown type `{other}`"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl RepoSource for GitHubSource {
    fn identity(&self) -> String {
        format!("github:{}/{}", self.owner, self.name)
    }

    async fn branches(&self) -> Result<Vec<Branch>, Error> {
        let target = Target::Branches;
        let mut next = Some(format!("{}/branches?per_page={PER_PAGE}", self.repo_path()));
        let mut seen = HashSet::new();
        let mut branches = Vec::new();
        while let Some(path) = next.take() {
            if seen.len() >= MAX_PAGES || !seen.insert(path.clone()) {
                return Err(self
                    .client
                    .ctx
                    .malformed(&target, "the pages of the branch list link in a loop"));
            }
            let req = Request {
                path,
                accept: JSON,
                target: &target,
            };
            let full = self.client.get(&req, true).await?;
            let page: Vec<BranchItem> = self.parse(&target, &full.body)?;
            for item in page {
                let commit = item
                    .commit
                    .sha
                    .parse()
                    .map_err(|e| self.client.ctx.malformed(&target, e))?;
                branches.push(Branch {
                    name: item.name,
                    commit,
                });
            }
            if let Some(link) = full.headers.get(http::header::LINK) {
                let link = link
                    .to_str()
                    .map_err(|e| self.client.ctx.malformed(&target, e))?;
                if let Some(url) = next_link(link) {
                    next = Some(self.client.link_path(url).ok_or_else(|| {
                        self.client
                            .ctx
                            .malformed(&target, "the next page's link leads off the API host")
                    })?);
                }
            }
        }
        branches.sort_by(|a, b| a.name.cmp(&b.name));
        branches.dedup_by(|a, b| a.name == b.name);
        Ok(branches)
    }

    async fn default_branch(&self) -> Result<String, Error> {
        Ok(self.repo_info().await?.default_branch)
    }

    async fn head(&self, branch: &str) -> Result<CommitId, Error> {
        validate_branch(branch)?;
        let target = Target::Branch(branch.to_owned());
        let req = Request {
            path: format!(
                "{}/git/ref/heads/{}",
                self.repo_path(),
                encode_branch(branch)
            ),
            accept: JSON,
            target: &target,
        };
        let full = match self.client.get(&req, true).await {
            Ok(full) => full,
            Err(e @ Error::NotFound { .. }) => {
                // GitHub answers 404 alike for a missing branch and a missing (or hidden)
                // repository: ask for the repository to say which.
                self.repo_info().await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let info: RefInfo = match serde_json::from_slice(&full.body) {
            Ok(info) => info,
            // An array lists refs that merely start with the name: not this branch.
            Err(_) if full.body.trim_ascii_start().starts_with(b"[") => {
                return Err(self.client.ctx.status_error(
                    http::StatusCode::NOT_FOUND,
                    "Not Found",
                    &target,
                ));
            }
            Err(e) => return Err(self.client.ctx.malformed(&target, e)),
        };
        if info.name != format!("refs/heads/{branch}") || info.object.kind != "commit" {
            return Err(self.client.ctx.malformed(
                &target,
                format_args!(
                    "asked for refs/heads/{branch}, got `{}` pointing at a {}",
                    info.name, info.object.kind
                ),
            ));
        }
        info.object
            .sha
            .parse()
            .map_err(|e| self.client.ctx.malformed(&target, e))
    }

    async fn tree(&self, commit: &CommitId) -> Result<Tree, Error> {
        let target = Target::Tree(*commit);
        let listing = self.list_tree(&commit.to_string(), true, &target).await?;
        let mut flat = Flat::default();
        if listing.truncated {
            tracing::debug!(%commit, repo = %self.repo(), "recursive tree truncated by GitHub; walking subtrees");
            self.walk(commit, &mut flat).await?;
        } else {
            flat.absorb(&self.client.ctx, &target, "", listing, None)?;
        }
        Ok(Tree::new(flat.entries)?.with_submodules(flat.submodules))
    }

    async fn changes(
        &self,
        base: &CommitId,
        head: &CommitId,
        policy: &FilePolicy,
    ) -> Result<TreeChanges, Error> {
        if !self.tree_diff {
            return Ok(TreeChanges::Unavailable {
                reason: format!(
                    "the GitHub source of `{}` lists whole trees (its tree diff is off; see `GitHubSourceBuilder::tree_diff`)",
                    self.repo()
                ),
            });
        }
        Ok(match self.descend(base, head, policy).await? {
            Ok(changes) => TreeChanges::Listed(changes),
            Err(reason) => {
                tracing::debug!(%base, %head, repo = %self.repo(), %reason, "no tree diff");
                TreeChanges::Unavailable { reason }
            }
        })
    }

    fn contents(
        &self,
        commit: &CommitId,
        wanted: Vec<TreeEntry>,
    ) -> BoxStream<'_, Result<Blob, Error>> {
        let mut pending: HashMap<BlobId, Vec<TreeEntry>> = HashMap::new();
        for entry in wanted {
            pending.entry(entry.blob).or_default().push(entry);
        }
        let phase = if pending.len() > self.tarball_threshold {
            Phase::StartTarball
        } else {
            Phase::StartBlobs
        };
        let fetch = Fetch {
            src: self,
            commit: *commit,
            pending,
            ready: VecDeque::new(),
            phase,
            tarball_attempts: 0,
        };
        stream::unfold(fetch, Fetch::step).boxed()
    }
}

enum Phase<'a> {
    StartTarball,
    Tarball {
        rx: mpsc::Receiver<(BlobId, Bytes)>,
        task: JoinHandle<std::io::Result<TarStats>>,
    },
    StartBlobs,
    Blobs(BoxStream<'a, Result<(BlobId, Bytes), Error>>),
    Done,
}

/// The state of one `contents` stream.
struct Fetch<'a> {
    src: &'a GitHubSource,
    commit: CommitId,
    /// Blobs not delivered yet, with the entries wanting them.
    pending: HashMap<BlobId, Vec<TreeEntry>>,
    ready: VecDeque<Blob>,
    phase: Phase<'a>,
    tarball_attempts: u32,
}

impl<'a> Fetch<'a> {
    async fn step(mut self) -> Option<(Result<Blob, Error>, Self)> {
        loop {
            if let Some(blob) = self.ready.pop_front() {
                return Some((Ok(blob), self));
            }
            match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Done => return None,
                Phase::StartTarball => match self.start_tarball().await {
                    Ok(phase) => self.phase = phase,
                    Err(e) => return Some((Err(e), self)),
                },
                Phase::Tarball { mut rx, task } => match rx.recv().await {
                    Some((id, data)) => {
                        self.deliver(id, &data);
                        self.phase = Phase::Tarball { rx, task };
                    }
                    None => match task.await {
                        Ok(Ok(stats)) => {
                            tracing::debug!(
                                commit = %self.commit,
                                entries = stats.entries,
                                matched = stats.matched,
                                mismatched = stats.mismatched,
                                left = self.pending.len(),
                                "tarball read; fetching what it lacked through the blob API"
                            );
                            self.phase = Phase::StartBlobs;
                        }
                        Ok(Err(io)) => self.phase = self.after_broken_tarball(&io).await,
                        Err(join) => {
                            return Some((
                                Err(Error::Backend {
                                    backend: "github",
                                    message: format!(
                                        "reading the tarball of commit {} of `{}` panicked or was aborted",
                                        self.commit,
                                        self.src.repo()
                                    ),
                                    retryable: true,
                                    source: Some(Box::new(join)),
                                }),
                                self,
                            ));
                        }
                    },
                },
                Phase::StartBlobs => {
                    if self.pending.is_empty() {
                        return None;
                    }
                    self.phase = Phase::Blobs(self.blob_stream());
                }
                Phase::Blobs(mut blobs) => match blobs.next().await {
                    Some(Ok((id, data))) => {
                        self.deliver(id, &data);
                        self.phase = Phase::Blobs(blobs);
                    }
                    Some(Err(e)) => return Some((Err(e), self)),
                    None => return None,
                },
            }
        }
    }

    /// Queues the blob for every entry still waiting for it.
    fn deliver(&mut self, id: BlobId, data: &Bytes) {
        if let Some(entries) = self.pending.remove(&id) {
            self.ready.extend(entries.into_iter().map(|e| Blob {
                path: e.path,
                id,
                data: data.clone(),
            }));
        }
    }

    async fn start_tarball(&mut self) -> Result<Phase<'a>, Error> {
        let src = self.src;
        let target = Target::Tarball(self.commit);
        let req = Request {
            path: format!("{}/tarball/{}", src.repo_path(), self.commit),
            accept: JSON,
            target: &target,
        };
        let response = src.client.get_streaming(&req).await?;
        tracing::debug!(
            commit = %self.commit,
            content_type = ?response.headers.get(http::header::CONTENT_TYPE),
            "streaming the tarball"
        );
        let mut wanted = Wanted::new();
        for entries in self.pending.values() {
            for e in entries {
                wanted.insert(e.path.as_bytes().to_vec(), (e.blob, e.size));
            }
        }
        let (tx, rx) = mpsc::channel(32);
        let task = tarball::extract(response.body, response.permit, wanted, tx);
        Ok(Phase::Tarball { rx, task })
    }

    /// After a tarball broke off: read it again while many blobs are left and the retry
    /// policy allows, else fetch the rest through the blob API.
    async fn after_broken_tarball(&mut self, io: &std::io::Error) -> Phase<'a> {
        self.tarball_attempts += 1;
        let why = format!("the tarball broke off: {}", self.src.client.describe_io(io));
        let target = Target::Tarball(self.commit);
        if self.pending.len() > self.src.tarball_threshold
            && self.tarball_attempts < self.src.retry.attempts()
            && self
                .src
                .client
                .retry_after_failure(&target, self.tarball_attempts, &why)
                .await
                .is_ok()
        {
            Phase::StartTarball
        } else {
            tracing::debug!(commit = %self.commit, reason = %why, "fetching the rest through the blob API");
            Phase::StartBlobs
        }
    }

    fn blob_stream(&self) -> BoxStream<'a, Result<(BlobId, Bytes), Error>> {
        let src = self.src;
        let jobs: Vec<(BlobId, String)> = self
            .pending
            .iter()
            .map(|(id, entries)| (*id, entries[0].path.to_string()))
            .collect();
        stream::iter(jobs)
            .map(move |(id, path)| async move { src.fetch_blob(id, path).await.map(|d| (id, d)) })
            .buffer_unordered(src.max_in_flight)
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_are_encoded_per_segment() {
        assert_eq!(encode_branch("main"), "main");
        assert_eq!(encode_branch("feature/x-1.2_y~"), "feature/x-1.2_y~");
        assert_eq!(encode_branch("fix/#12 %"), "fix/%2312%20%25");
        assert_eq!(encode_branch("émoji/ü+@"), "%C3%A9moji/%C3%BC%2B%40");
    }

    #[test]
    fn invalid_branch_names_are_refused() {
        for ok in ["main", "feature/x", "a+b@c#d", "ü"] {
            assert!(validate_branch(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/x", "x/", "a..b", "a//b", ".hidden", "x/.y", "a.lock", "a b", "a~1", "a^", "a:b",
            "a?", "a*", "a[", "a\\b", "@", "a@{1}", "x.", "a\u{7f}",
        ] {
            assert!(validate_branch(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn next_links_are_found() {
        let h = r#"<https://api.github.com/repositories/1/branches?per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1/branches?per_page=100&page=5>; rel="last""#;
        assert_eq!(
            next_link(h),
            Some("https://api.github.com/repositories/1/branches?per_page=100&page=2")
        );
        let h = r#"<https://x/b?page=1>; rel="prev", <https://x/b?page=3>; rel="next""#;
        assert_eq!(next_link(h), Some("https://x/b?page=3"));
        assert_eq!(next_link(r#"<https://x/b?page=1>; rel="first""#), None);
    }

    #[test]
    fn json_blobs_decode() {
        let body = br#"{"sha":"x","size":6,"content":"aGVs\nbG8K\n","encoding":"base64"}"#;
        assert_eq!(
            decode_json_blob(body).unwrap(),
            Bytes::from_static(b"hello\n")
        );
        assert!(decode_json_blob(b"not json").is_none());
    }
}
