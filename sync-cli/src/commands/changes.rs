//! `projsync changes [FROM] [TO]`: what changed between two runs.

use std::io::Write;

use sync_core::{Error, RepoPath, SyncId, SyncStoreExt};

use crate::cli::ChangesArgs;
use crate::exit::Exit;
use crate::open::{self, Target};
use crate::quote::quote_path;
use crate::report;

pub(super) async fn exec(target: &Target, args: &ChangesArgs) -> Result<Exit, Error> {
    let run = |s: &Option<String>| s.as_deref().map(str::parse::<SyncId>).transpose();
    let (from, to) = (run(&args.from)?, run(&args.to)?);
    let (store, key) = open::existing(target).await?;
    let changes = store.changes(&key, from, to).await?;
    report::write_stdout(|out| {
        if args.json.json {
            return report::json_line(out, &changes);
        }
        let q = |p: &RepoPath| quote_path(p.as_bytes());
        // One line per path, by path bytes (a rename at its new path), as git's
        // `--name-status` lists them.
        let mut lines: Vec<(&RepoPath, String)> = Vec::new();
        lines.extend(changes.added.iter().map(|p| (p, format!("A\t{}", q(p)))));
        lines.extend(changes.removed.iter().map(|p| (p, format!("D\t{}", q(p)))));
        lines.extend(
            changes
                .renamed
                .iter()
                .map(|r| (&r.to, format!("R\t{}\t{}", q(&r.from), q(&r.to)))),
        );
        for m in &changes.modified {
            let symbols: Vec<String> = [
                ('+', &m.symbols_added),
                ('-', &m.symbols_removed),
                ('~', &m.symbols_changed),
            ]
            .into_iter()
            .flat_map(|(sign, list)| list.iter().map(move |s| format!("{sign}{s}")))
            .collect();
            let mut line = format!("M\t{}", q(&m.path));
            if !symbols.is_empty() {
                line.push('\t');
                line.push_str(&symbols.join(", "));
            }
            lines.push((&m.path, line));
        }
        lines.sort_by(|a, b| a.0.cmp(b.0));
        for (_, line) in lines {
            writeln!(out, "{line}")?;
        }
        Ok(())
    })?;
    if args.json.json {
        return Ok(Exit::Success);
    }
    let from = changes
        .from
        .map_or_else(|| "the empty state".to_owned(), |id| format!("run {id}"));
    eprintln!(
        "{} added, {} modified, {} removed, {} renamed from {from} to run {}",
        changes.added.len(),
        changes.modified.len(),
        changes.removed.len(),
        changes.renamed.len(),
        changes.to
    );
    Ok(Exit::Success)
}
