//! `projsync ls [--at RUN]`: the active file index, or the index right after a run.

use std::io::Write;

use serde::Serialize;
use sync_core::{Error, PathJson, SyncStoreExt};

use crate::cli::LsArgs;
use crate::exit::Exit;
use crate::open::{self, Target};
use crate::quote::quote_path;
use crate::report;

/// One file of `ls --json`.
#[derive(Serialize)]
struct JsonFile<'a> {
    #[serde(flatten)]
    path: PathJson<'a>,
    blob: String,
    size: u64,
    kind: String,
}

pub(super) async fn exec(target: &Target, args: &LsArgs) -> Result<Exit, Error> {
    let at = args.at.run()?;
    let (store, key) = open::existing(target).await?;
    let index = store.file_index_as_of(&key, at).await?;
    if index.is_empty() && store.last_completed(&key).await?.is_none() {
        eprintln!(
            "`{key}` has not been synced into `{}` yet: run `projsync run` first",
            target.db.label()
        );
    }
    report::write_stdout(|out| {
        for f in index.files() {
            let e = &f.entry;
            if args.json {
                report::json_line(
                    out,
                    &JsonFile {
                        path: PathJson::new(&e.path),
                        blob: e.blob.to_string(),
                        size: e.size,
                        kind: e.kind.to_string(),
                    },
                )?;
            } else if args.nul {
                out.write_all(e.path.as_bytes())?;
                write!(out, "\t{}\t{}\t{}\0", e.blob, e.size, e.kind)?;
            } else {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}",
                    quote_path(e.path.as_bytes()),
                    e.blob,
                    e.size,
                    e.kind
                )?;
            }
        }
        Ok(())
    })?;
    Ok(Exit::Success)
}
