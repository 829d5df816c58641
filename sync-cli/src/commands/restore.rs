//! `projsync restore SYNC_ID`: a new run with the state right after an earlier one.

use std::io::Write;

use sync_core::{Error, SyncId};

use crate::cli::RestoreArgs;
use crate::exit::Exit;
use crate::open::{self, Target};
use crate::report;

pub(super) async fn exec(target: &Target, args: &RestoreArgs) -> Result<Exit, Error> {
    let to: SyncId = args.sync_id.parse()?;
    let (store, key) = open::existing(target).await?;
    let record = store.restore(&key, to).await?;
    report::write_stdout(|out| {
        if args.json.json {
            report::json_line(out, &record)
        } else {
            writeln!(out, "{}", report::summary(&record))
        }
    })?;
    Ok(Exit::Success)
}
