//! Workspace end-to-end tests of Project Sync live in `e2e/` (one test binary). This
//! library only compiles and runs the workspace README's examples as doctests, since they
//! use every crate of the workspace.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

/// The workspace README's examples.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct WorkspaceReadme;
