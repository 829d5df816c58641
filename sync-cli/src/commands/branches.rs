//! `projsync branches`: the repository's branches, the default one marked.

use std::io::Write;

use serde::Serialize;
use sync_core::{CommitId, Error};

use crate::cli::BranchesArgs;
use crate::exit::Exit;
use crate::open::{self, Target};
use crate::report;

/// One branch of `branches --json`.
#[derive(Serialize)]
struct JsonBranch<'a> {
    name: &'a str,
    commit: &'a CommitId,
    default: bool,
}

pub(super) async fn exec(target: &Target, args: &BranchesArgs) -> Result<Exit, Error> {
    let source = open::source(&target.source, args.api.api_url.as_deref())?;
    let default = source.default_branch().await.ok();
    let branches = source.branches().await?;
    report::write_stdout(|out| {
        for b in &branches {
            let is_default = default.as_deref() == Some(b.name.as_str());
            if args.json.json {
                report::json_line(
                    out,
                    &JsonBranch {
                        name: &b.name,
                        commit: &b.commit,
                        default: is_default,
                    },
                )?;
            } else {
                let mark = if is_default { '*' } else { ' ' };
                writeln!(out, "{mark} {}\t{}", b.name, b.commit)?;
            }
        }
        Ok(())
    })?;
    Ok(Exit::Success)
}
