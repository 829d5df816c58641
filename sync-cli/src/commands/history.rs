//! `projsync history`: the repository's runs, newest first.

use std::io::Write;

use sync_core::Error;

use crate::cli::HistoryArgs;
use crate::exit::Exit;
use crate::open::{self, Target};
use crate::report;

pub(super) async fn exec(target: &Target, args: &HistoryArgs) -> Result<Exit, Error> {
    let (store, key) = open::existing(target).await?;
    let runs = store.history(&key, args.limit).await?;
    report::write_stdout(|out| {
        if args.json.json {
            for r in &runs {
                report::json_line(out, r)?;
            }
            return Ok(());
        }
        writeln!(
            out,
            "{:>6}  {:<10}  {:<16}  {:<12}  {:<20}  changes (+added ~modified -deleted >renamed)",
            "ID", "STATUS", "BRANCH", "COMMIT", "STARTED"
        )?;
        for r in &runs {
            let s = &r.stats;
            let commit = r.commit.to_string();
            write!(
                out,
                "{:>6}  {:<10}  {:<16}  {:<12}  {:<20}  +{} ~{} -{} >{}, {} files, {} entries written",
                r.id.to_string(),
                r.status.as_str(),
                r.branch,
                commit.get(..12).unwrap_or(&commit),
                r.started_at.format("%Y-%m-%d %H:%M:%S"),
                s.added,
                s.modified,
                s.deleted,
                s.renamed,
                s.files,
                s.entries_written
            )?;
            if let Some(from) = r.restored_from {
                write!(out, ", restored from run {from}")?;
            }
            if let Some(error) = &r.error {
                write!(out, ", error: {}", target.db.scrub(error))?;
            }
            writeln!(out)?;
        }
        Ok(())
    })?;
    Ok(Exit::Success)
}
