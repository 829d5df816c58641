//! The one table from an outcome to the process's exit status.

use std::fmt::Write as _;
use std::process::ExitCode;

use sync_core::{Error, ErrorKind};

/// How `projsync` ended, as its exit status. The numbers are stable: scripts may test them.
/// The crate documentation (and `projsync --help`) has the table.
///
/// Every [`ErrorKind`] maps to one status through `From<&Error>`; clap's usage errors
/// exit 2 as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Exit {
    /// 0: the command did what it was asked.
    Success,
    /// 1: a backend failed, or an error of no more specific kind.
    Failure,
    /// 2: a usage error or an invalid value ([`ErrorKind::InvalidInput`]).
    Usage,
    /// 3: something named does not exist ([`ErrorKind::NotFound`]).
    NotFound,
    /// 4: another run holds the repository, or the state changed ([`ErrorKind::Conflict`]).
    Conflict,
    /// 5: credentials missing or refused ([`ErrorKind::Unauthorized`]).
    Unauthorized,
    /// 6: a rate limit that was not waited for ([`ErrorKind::RateLimited`]).
    RateLimited,
    /// 7: content failed an integrity check ([`ErrorKind::Corrupt`]).
    Corrupt,
    /// 8: the store or source cannot do it ([`ErrorKind::Unsupported`]).
    Unsupported,
    /// 130: interrupted with Ctrl-C ([`ErrorKind::Cancelled`]), as shells report SIGINT.
    Interrupted,
}

/// Every status with the words `--help` and the READMEs use for it, in order.
const TABLE: [(Exit, &str); 10] = [
    (Exit::Success, "success"),
    (
        Exit::Failure,
        "a backend failed (database, git, HTTP, output), or another error",
    ),
    (
        Exit::Usage,
        "usage error: unknown command or option, or an invalid value",
    ),
    (
        Exit::NotFound,
        "not found: repository, branch, run or store",
    ),
    (
        Exit::Conflict,
        "conflict: another run is syncing the repository, or the state changed",
    ),
    (
        Exit::Unauthorized,
        "unauthorized: credentials missing, wrong or lacking a permission",
    ),
    (
        Exit::RateLimited,
        "rate limited: try again after the reset the message names",
    ),
    (
        Exit::Corrupt,
        "corrupt content: data failed an integrity check; nothing was stored",
    ),
    (Exit::Unsupported, "unsupported by the store or source"),
    (
        Exit::Interrupted,
        "interrupted (Ctrl-C); the active state is unchanged, vectors computed so far are kept",
    ),
];

impl Exit {
    /// The status number.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failure => 1,
            Self::Usage => 2,
            Self::NotFound => 3,
            Self::Conflict => 4,
            Self::Unauthorized => 5,
            Self::RateLimited => 6,
            Self::Corrupt => 7,
            Self::Unsupported => 8,
            Self::Interrupted => 130,
        }
    }

    /// The status of an error of this kind.
    pub fn of_kind(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidInput => Self::Usage,
            ErrorKind::NotFound => Self::NotFound,
            ErrorKind::Conflict => Self::Conflict,
            ErrorKind::Unauthorized => Self::Unauthorized,
            ErrorKind::RateLimited => Self::RateLimited,
            ErrorKind::Corrupt => Self::Corrupt,
            ErrorKind::Unsupported => Self::Unsupported,
            ErrorKind::Cancelled => Self::Interrupted,
            // `Backend`, and any kind added to the library later.
            _ => Self::Failure,
        }
    }

    /// The exit-status table as `--help` shows it.
    pub fn help_table() -> String {
        let mut out = String::from("Exit status:\n");
        for (exit, meaning) in TABLE {
            let _ = writeln!(out, "  {:>3}  {meaning}", exit.code());
        }
        out
    }
}

impl From<&Error> for Exit {
    fn from(error: &Error) -> Self {
        Self::of_kind(error.kind())
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of the library, each with an error of that kind.
    fn every_kind() -> Vec<(Error, u8)> {
        vec![
            (Error::invalid_input("bad glob"), 2),
            (Error::not_found("no branch"), 3),
            (Error::conflict("busy"), 4),
            (Error::unauthorized("bad token"), 5),
            (Error::rate_limited(None, "later"), 6),
            (Error::corrupt("bad blob"), 7),
            (Error::unsupported("no vectors"), 8),
            (Error::Cancelled, 130),
            (Error::backend("sqlite", "disk full", "io"), 1),
            (Error::transient("github", "timed out", None), 1),
        ]
    }

    #[test]
    fn every_error_kind_has_its_own_stable_status() {
        let mut seen = std::collections::BTreeSet::new();
        for (error, code) in every_kind() {
            let exit = Exit::from(&error);
            assert_eq!(exit.code(), code, "{:?}", error.kind());
            assert_eq!(Exit::of_kind(error.kind()), exit);
            seen.insert(format!("{:?}", error.kind()));
        }
        // The list above covers every kind the library has: a new kind fails here until
        // it is given a status (and a line in the READMEs).
        let kinds = [
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Unauthorized,
            ErrorKind::RateLimited,
            ErrorKind::InvalidInput,
            ErrorKind::Corrupt,
            ErrorKind::Unsupported,
            ErrorKind::Cancelled,
            ErrorKind::Backend,
        ];
        for kind in kinds {
            assert!(
                seen.contains(&format!("{kind:?}")),
                "{kind:?} is not tested"
            );
        }
        assert_eq!(seen.len(), kinds.len());
    }

    #[test]
    fn the_help_table_lists_every_status_once_in_order() {
        let help = Exit::help_table();
        let codes: Vec<u8> = help
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 6, 7, 8, 130]);
        for (exit, _) in TABLE {
            assert_eq!(
                TABLE
                    .iter()
                    .filter(|(e, _)| e.code() == exit.code())
                    .count(),
                1
            );
        }
    }

    #[test]
    fn the_readme_shows_the_same_table() {
        let readme = include_str!("../README.md");
        for (exit, meaning) in TABLE {
            let row = format!("| {} | {meaning} |", exit.code());
            assert!(readme.contains(&row), "README lacks `{row}`");
        }
    }
}
