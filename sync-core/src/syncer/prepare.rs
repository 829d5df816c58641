//! Prepare: checks the settings, resolves the branch head, and names the settings with
//! their fingerprint.

use serde::Serialize;

use super::Phases;
use crate::{CommitId, Embedder, Error, Extractor, FilePolicy, Phase, SyncEvent};

/// Sends [`Phase::Prepare`], checks the embedder and resolves `branch` (the source's
/// default branch when `None`) to its head commit.
pub(super) async fn run(
    phases: Phases<'_>,
    branch: Option<&str>,
) -> Result<(String, CommitId), Error> {
    let s = phases.syncer;
    phases
        .emit
        .send(SyncEvent::Phase {
            phase: Phase::Prepare,
        })
        .await?;
    if let Some(embedder) = &s.embedder
        && embedder.dimensions() == 0
    {
        return Err(Error::invalid_input(format!(
            "embedder `{}` reports zero dimensions",
            embedder.model()
        )));
    }
    let branch = match branch {
        Some(b) => b.to_owned(),
        None => s.source.default_branch().await?,
    };
    let commit = s.source.head(&branch).await?;
    Ok((branch, commit))
}

/// The settings a run's output depends on, in the form their fingerprint hashes. Field
/// names are spelled out so that renaming a Rust field cannot change a fingerprint; any
/// change here changes every repository's fingerprint and so re-extracts it once.
#[derive(Serialize)]
struct Settings<'a> {
    #[serde(rename = "include")]
    include: &'a [String],
    #[serde(rename = "exclude")]
    exclude: &'a [String],
    #[serde(rename = "max_file_size")]
    max_file_size: u64,
    #[serde(rename = "extractor")]
    extractor: String,
    #[serde(rename = "model")]
    model: Option<&'a str>,
    #[serde(rename = "dimensions")]
    dimensions: Option<usize>,
}

/// The fingerprint of a syncer's settings: the first 16 hex digits of the BLAKE3 hash of
/// their JSON form (see [`Settings`]).
pub(super) fn fingerprint(
    policy: &FilePolicy,
    extractor: &dyn Extractor,
    embedder: Option<&dyn Embedder>,
) -> String {
    blake3::hash(&settings_json(policy, extractor, embedder)).to_hex()[..16].to_owned()
}

/// The JSON form of the settings that [`fingerprint`] hashes.
fn settings_json(
    policy: &FilePolicy,
    extractor: &dyn Extractor,
    embedder: Option<&dyn Embedder>,
) -> Vec<u8> {
    let spec = policy.spec();
    let settings = Settings {
        include: &spec.include,
        exclude: &spec.exclude,
        max_file_size: spec.max_file_size,
        extractor: extractor.id(),
        model: embedder.map(Embedder::model),
        dimensions: embedder.map(Embedder::dimensions),
    };
    // Serializing a struct of strings and numbers cannot fail.
    serde_json::to_vec(&settings).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::test_support::Bench;
    use super::*;
    use crate::{ErrorKind, HashEmbedder, LineChunker, Syncer};

    #[tokio::test]
    async fn resolves_the_default_branch_and_its_head() {
        let mut bench = Bench::new();
        let commit = bench.source.commit("trunk", [("a.txt", "a\n")]).unwrap();
        bench.source.set_default_branch("trunk");
        let (branch, head) = run(bench.phases(), None).await.unwrap();
        assert_eq!((branch.as_str(), head), ("trunk", commit));
        assert_eq!(
            bench.events(),
            [SyncEvent::Phase {
                phase: Phase::Prepare
            }]
        );
    }

    #[tokio::test]
    async fn an_unknown_branch_is_not_found() {
        let bench = Bench::new();
        bench.source.commit("main", [("a.txt", "a\n")]).unwrap();
        let err = run(bench.phases(), Some("nope")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains("`nope`"), "{err}");
    }

    /// An embedder that reports no dimensions.
    #[derive(Debug)]
    struct Flat;

    #[async_trait::async_trait]
    impl Embedder for Flat {
        fn model(&self) -> &str {
            "flat"
        }
        fn dimensions(&self) -> usize {
            0
        }
        async fn embed(&self, texts: &[&str]) -> Result<Vec<crate::Embedding>, Error> {
            Ok(texts
                .iter()
                .map(|_| crate::Embedding::new(Vec::new()))
                .collect())
        }
    }

    #[tokio::test]
    async fn an_embedder_without_dimensions_is_refused_before_the_source_is_asked() {
        let bench = Bench::new().with(|s| s.with_embedder(Arc::new(Flat)));
        // No branch exists: the embedder check comes first.
        let err = run(bench.phases(), Some("main")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("zero dimensions"), "{err}");
    }

    fn syncer() -> Syncer {
        let source = Arc::new(crate::MemorySource::new("fp"));
        Syncer::new(source, Arc::new(crate::MemoryStore::new())).unwrap()
    }

    /// Pins the fingerprints: a change here re-extracts every repository once, so it
    /// must be deliberate (and said so in the release notes).
    #[test]
    fn fingerprints_are_pinned() {
        let s = syncer();
        let json = settings_json(&s.policy, s.extractor.as_ref(), None);
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"include":[],"exclude":[],"max_file_size":1048576,"extractor":"lines:4000","model":null,"dimensions":null}"#
        );
        assert_eq!(s.fingerprint(), "1c9dd4e0a63b07a3", "default settings");
        let custom = syncer()
            .with_policy(
                FilePolicy::builder()
                    .include("src/**")
                    .exclude("**/*.lock")
                    .max_file_size(4096)
                    .build()
                    .unwrap(),
            )
            .with_extractor(Arc::new(LineChunker::new(200)))
            .with_embedder(Arc::new(HashEmbedder::new(16)));
        assert_eq!(custom.fingerprint(), "8a38f123d91bd212", "custom settings");
    }

    #[test]
    fn every_setting_changes_the_fingerprint() {
        let base = syncer().fingerprint();
        let policy = |b: crate::PolicySpec| syncer().with_policy(b.build().unwrap()).fingerprint();
        let variants = [
            policy(FilePolicy::builder().include("x")),
            policy(FilePolicy::builder().exclude("x")),
            policy(FilePolicy::builder().max_file_size(1)),
            syncer()
                .with_extractor(Arc::new(LineChunker::new(7)))
                .fingerprint(),
            syncer()
                .with_embedder(Arc::new(HashEmbedder::new(8)))
                .fingerprint(),
        ];
        let mut all: Vec<&String> = variants.iter().collect();
        all.push(&base);
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), all.len(), "{all:?}");
        // A glob moved from include to exclude is a different setting.
        assert_ne!(variants[0], variants[1]);
    }
}
