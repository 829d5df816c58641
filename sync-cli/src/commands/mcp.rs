//! `projsync mcp`: the memory of the projects `serve` would serve, to one AI assistant
//! over the Model Context Protocol on stdin and stdout.

use sync_core::Error;
use sync_server::McpServer;

use super::serve::{self, Served};
use crate::cli::McpArgs;
use crate::exit::Exit;
use crate::open::Target;

/// How long, once the assistant has gone, the syncs it started get to stop.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

pub(super) async fn exec(target: &Target, args: &McpArgs) -> Result<Exit, Error> {
    let (config, auth) = serve::read_config(&args.projects)?;
    let Served { state, lines, .. } =
        serve::open_state(target, &args.projects, config, auth, args.allow_sync).await?;
    // stdout carries the protocol alone.
    for line in lines {
        eprintln!("{line}");
    }
    eprintln!("MCP on stdin and stdout");
    let served = McpServer::new(state.clone()).serve_stdio().await;
    // Syncs started over MCP run in this process: stop them cleanly (nothing of a
    // cancelled run becomes active).
    state.shutdown(SHUTDOWN_GRACE).await;
    served?;
    Ok(Exit::Success)
}
