//! The store and source conformance suites, and wrappers that count calls and inject
//! faults.
//!
//! Every store runs the same suite from its own `tests/`:
//!
//! ```no_run
//! use std::sync::Arc;
//! use sync_core::SyncStore;
//!
//! async fn new_store() -> Arc<dyn SyncStore> {
//!     Arc::new(sync_core::MemoryStore::new())
//! }
//!
//! sync_core::sync_store_conformance!(new_store);
//! ```
//!
//! The macro expands to one `#[tokio::test]` per function below (the calling crate needs
//! `tokio` with the `macros` and `rt-multi-thread` features as a dev-dependency). Each test
//! opens its own store through the factory, so they run in parallel.
//!
//! | test | invariant of the design |
//! |---|---|
//! | [`exact_mirror`] | 1. exact mirror |
//! | [`incremental_equals_full`], [`indexed_files_reads_the_given_paths`] | 9. incremental equals full |
//! | [`work_follows_change`], [`settings_change_reprocesses`] | 2. work follows change |
//! | [`one_active_version`] | 3. one active version |
//! | [`atomic_visibility`], [`fault_sweep_store`], [`fault_sweep_source`], [`cancellation_sweep`] | 4. atomic visibility |
//! | [`linear_history`] | 5. linear history |
//! | [`restore_is_new_run`] | 6. restore is a new run |
//! | [`nothing_is_lost`] | 7. nothing is lost |
//! | [`honest_events`] | 8. honest events |
//! | [`tenant_isolation`], [`store_contract`], [`search_active_only`] | the store contract |
//! | [`restore_counts`], [`unknown_runs_are_not_found`], [`search_ties_rank_by_path_then_ordinal`] | the store contract: the core's rules |
//! | [`reembed_fills_in_missing_embeddings`] | the store contract: embeddings stored outside a run |
//! | [`chunk_meta_round_trips`] | the store contract: language, kind and symbol path kept |
//! | [`search_and_read_as_of_a_run`] | reading as of a run ([`live_after`](crate::live_after), [`check_readable`](crate::check_readable)) |
//! | [`changes_between_runs`] | what changed between runs ([`SyncStoreExt::changes`](crate::SyncStoreExt::changes)) |
//!
//! # Sources
//!
//! Every source runs the source suite from its own `tests/`, with a [`SourceFixture`] that
//! builds the suite's [`History`] by the backend's own means:
//!
//! ```no_run
//! sync_core::sync_source_conformance!(sync_core::testkit::MemoryFixture);
//! ```
//!
//! | test | the [`RepoSource`](crate::RepoSource) contract |
//! |---|---|
//! | [`branches_sorted_with_heads`], [`default_branch`] | branches, heads, `HEAD` |
//! | [`unknown_branch_is_not_found`] | `NotFound` naming branch and repository |
//! | [`tree_lists_every_blob`] | git's ids, sizes and kinds; submodules counted |
//! | [`contents_rehash_to_their_ids`] | exactly the wanted blobs, each hashing to its id |
//! | [`missing_object_is_not_found`] | a missing object is `NotFound` naming its path |
//! | [`dropped_contents_leave_the_source_usable`] | cancellation |
//! | [`policy_filters_before_reading`] | nothing of an excluded path is read |
//! | [`changes_match_full_scan`] | 9. incremental equals full, through the source's changes |

mod fixture;
mod history;
mod incremental;
mod source_suite;
mod suite;
mod wrappers;

pub use fixture::{
    CHUNK_BYTES, DIMS, EntryKey, Harness, MAX_FILE_SIZE, STEPS, Snapshot, extractor, lib_rs,
    one_entry_batch, options, policy, run_start, step_branch, step_files,
};
pub use history::{BlockChunker, changes_between_runs, search_and_read_as_of_a_run};
pub use incremental::{
    INCREMENTAL_MAX_FILE_SIZE, changes_match_full_scan, check_incremental_equals_full,
    full_scan_reason, incremental_equals_full, incremental_history, incremental_policy,
    indexed_files_reads_the_given_paths, sync_commit,
};
pub use source_suite::{
    BuiltSource, EXCLUDED_PATH, History, HistoryCommit, MemoryFixture, SourceFixture, UNUSUAL_PATH,
    branches_sorted_with_heads, contents_rehash_to_their_ids, default_branch, dev_files,
    dropped_contents_leave_the_source_usable, expected_tree, history, lost_blob, lost_history,
    main_files, missing_object_is_not_found, policy_filters_before_reading, source_policy,
    tree_lists_every_blob, unknown_branch_is_not_found,
};
pub use suite::restore_counts;
pub use suite::{
    StoreFactory, atomic_visibility, cancellation_sweep, check_event_order, exact_mirror,
    fault_sweep_source, fault_sweep_store, honest_events, linear_history, nothing_is_lost,
    one_active_version, restore_is_new_run, search_active_only, settings_change_reprocesses,
    store_contract, tenant_isolation, work_follows_change,
};
pub use suite::{
    chunk_meta_round_trips, hybrid_ranking_is_the_same_in_every_store,
    lexical_search_finds_identifiers_and_paths, lexical_search_leaves_out_common_terms_only,
    models_coexist_and_an_unknown_model_is_a_clear_error, reembed_fills_in_missing_embeddings,
    search_ties_rank_by_path_then_ordinal, unknown_runs_are_not_found,
};
pub use wrappers::{
    CountingEmbedder, FaultMode, FaultPlan, FaultySource, FaultyStore, GateEmbedder,
};

/// Expands to one `#[tokio::test]` per conformance test for a store factory (see the
/// [module docs](crate::testkit)). The sweeps print how many fault points they covered.
#[macro_export]
macro_rules! sync_store_conformance {
    ($factory:expr) => {
        $crate::sync_store_conformance!(@each $factory;
            exact_mirror, work_follows_change, settings_change_reprocesses, one_active_version,
            atomic_visibility,
            linear_history, restore_is_new_run, nothing_is_lost, honest_events,
            tenant_isolation, store_contract, search_active_only, restore_counts);
        $crate::sync_store_conformance!(@each $factory;
            unknown_runs_are_not_found, search_ties_rank_by_path_then_ordinal,
            lexical_search_finds_identifiers_and_paths, lexical_search_leaves_out_common_terms_only,
            hybrid_ranking_is_the_same_in_every_store,
            models_coexist_and_an_unknown_model_is_a_clear_error,
            reembed_fills_in_missing_embeddings, chunk_meta_round_trips, incremental_equals_full,
            indexed_files_reads_the_given_paths);
        $crate::sync_store_conformance!(@each $factory;
            search_and_read_as_of_a_run, changes_between_runs);
        $crate::sync_store_conformance!(@sweep $factory;
            fault_sweep_store, fault_sweep_source, cancellation_sweep);
    };
    (@each $factory:expr; $($name:ident),*) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $crate::testkit::$name(&$factory).await;
        }
    )*};
    (@sweep $factory:expr; $($name:ident),*) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[allow(clippy::print_stdout)]
        async fn $name() {
            let points = $crate::testkit::$name(&$factory).await;
            println!("{}: swept {points} fault points", stringify!($name));
        }
    )*};
}

/// Expands to one `#[tokio::test]` per source conformance test for a [`SourceFixture`]
/// (see the [module docs](crate::testkit)). The calling crate needs `tokio` with the
/// `macros` and `rt-multi-thread` features as a dev-dependency.
#[macro_export]
macro_rules! sync_source_conformance {
    ($fixture:expr) => {
        $crate::sync_source_conformance!(@each $fixture;
            branches_sorted_with_heads, default_branch, unknown_branch_is_not_found,
            tree_lists_every_blob, contents_rehash_to_their_ids, missing_object_is_not_found,
            dropped_contents_leave_the_source_usable, policy_filters_before_reading,
            changes_match_full_scan);
    };
    (@each $fixture:expr; $($name:ident),*) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $crate::testkit::$name(&$fixture).await;
        }
    )*};
}
