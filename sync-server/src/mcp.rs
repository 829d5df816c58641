//! The memory over the Model Context Protocol: tools to search, read and list a project's
//! files and to follow its syncs, and the files as resources, for AI assistants. One
//! server answers for every project of an [`AppState`], over stdio
//! ([`McpServer::serve_stdio`]) or over streamable HTTP at `/mcp` of the
//! [`router`](crate::router), behind the API's bearer tokens.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, percent_encode};
use rmcp::handler::server::common::schema_for_type;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::schemars::JsonSchema;
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sync_core::{Error, HitJson, PathJson, RepoPath, SearchMode, SyncId, SyncStoreExt};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::service;
use crate::state::{AppState, Project};

/// The scheme of the files' resource URIs: `projsync://PROJECT/PATH`.
pub const RESOURCE_SCHEME: &str = "projsync";

/// Resources listed per page of `resources/list`.
const RESOURCE_PAGE: usize = 1000;

/// An MCP server over the projects of an [`AppState`].
///
/// Tools: `search_code`, `read_file`, `list_files`, `sync_status`, `sync_history`, and
/// `start_sync` where [`AppState::with_mcp_start_sync`] allows it. Each takes a
/// `project` argument, which may be left out when the caller sees one project only.
/// Every file with text is a resource `projsync://PROJECT/PATH` (the path
/// percent-encoded), listed and read like the `read_file` tool.
///
/// Failures are tool results with `isError` and `{"error": {"kind", "message"}}` (the
/// API's error shape), so the server keeps serving. Over HTTP a caller sees the projects
/// of its token's tenant only; over stdio the caller is the local operator, who sees
/// every project.
#[derive(Debug, Clone)]
pub struct McpServer {
    state: AppState,
}

/// `search_code`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
struct SearchCodeArgs {
    /// The project's name; may be left out when there is exactly one project.
    #[serde(default)]
    project: Option<String>,
    /// What to look for: words, an identifier, or a description of the code in plain
    /// language.
    query: String,
    /// How many hits, from 1 to 100 (default 10).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    k: Option<usize>,
    /// How hits are ranked: `hybrid` (meaning and words fused), `vector` (meaning only)
    /// or `lexical` (words of the text and path only). Default: `hybrid` when the server
    /// embeds queries, else `lexical`.
    #[serde(default)]
    mode: Option<Mode>,
    /// Answer from the memory as it was right after this completed sync run (an `id` from
    /// sync_history), e.g. to see code since deleted; default: the current memory.
    #[serde(default)]
    run: Option<i64>,
}

/// A search mode.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(rename_all = "lowercase")]
enum Mode {
    Hybrid,
    Vector,
    Lexical,
}

impl From<Mode> for SearchMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Hybrid => Self::Hybrid,
            Mode::Vector => Self::Vector,
            Mode::Lexical => Self::Lexical,
        }
    }
}

/// `read_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
struct ReadFileArgs {
    /// The project's name; may be left out when there is exactly one project.
    #[serde(default)]
    project: Option<String>,
    /// The file's path in the repository, e.g. `src/lib.rs` (as `list_files` and
    /// `search_code` give it).
    path: String,
    /// The first line to return, from 1 (default 1).
    #[serde(default)]
    #[schemars(range(min = 1))]
    start_line: Option<usize>,
    /// The last line to return, inclusive (default: the file's last line).
    #[serde(default)]
    #[schemars(range(min = 1))]
    end_line: Option<usize>,
    /// Answer from the memory as it was right after this completed sync run (an `id` from
    /// sync_history), e.g. to see code since deleted; default: the current memory.
    #[serde(default)]
    run: Option<i64>,
}

/// `list_files`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
struct ListFilesArgs {
    /// The project's name; may be left out when there is exactly one project.
    #[serde(default)]
    project: Option<String>,
    /// Only paths matching this glob, e.g. `src/**/*.rs` or `**/README.md` (`*` stays
    /// within a directory, `**` crosses directories).
    #[serde(default)]
    glob: Option<String>,
    /// At most this many files, from 1 to 10000 (default 1000); `total` counts them all.
    #[serde(default)]
    #[schemars(range(min = 1, max = 10000))]
    limit: Option<usize>,
    /// Answer from the memory as it was right after this completed sync run (an `id` from
    /// sync_history), e.g. to see code since deleted; default: the current memory.
    #[serde(default)]
    run: Option<i64>,
}

/// `sync_status`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
struct SyncStatusArgs {
    /// The project's name; may be left out when there is exactly one project.
    #[serde(default)]
    project: Option<String>,
}

/// `sync_history`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
struct SyncHistoryArgs {
    /// The project's name; may be left out when there is exactly one project.
    #[serde(default)]
    project: Option<String>,
    /// How many runs, newest first, from 1 to 1000 (default 10).
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<usize>,
}

/// `changes`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
struct ChangesArgs {
    /// The project's name; may be left out when there is exactly one project.
    #[serde(default)]
    project: Option<String>,
    /// The run to compare from (an `id` from sync_history); default: the completed run
    /// before `to`.
    #[serde(default)]
    from: Option<i64>,
    /// The run to compare to; default: the last completed run.
    #[serde(default)]
    to: Option<i64>,
}

/// `start_sync`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
struct StartSyncArgs {
    /// The project's name; may be left out when there is exactly one project.
    #[serde(default)]
    project: Option<String>,
    /// The branch to sync (default: the project's default branch).
    #[serde(default)]
    branch: Option<String>,
}

/// One file of `list_files`.
#[derive(Serialize)]
struct FileJson<'a> {
    #[serde(flatten)]
    path: PathJson<'a>,
    kind: &'static str,
    size: u64,
    blob: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<&'static str>,
}

/// The tools, in the order they are listed.
fn tools(start_sync: bool) -> Vec<Tool> {
    let read_only = ToolAnnotations::new()
        .read_only(true)
        .destructive(false)
        .idempotent(true)
        .open_world(false);
    let mut tools = vec![
        Tool::new(
            "search_code",
            "Search the project's code and documents as of its last sync, by meaning and by words. Returns the best matching pieces (functions, classes, sections, or runs of lines), best first, each with its path, start_line and end_line, symbol (where the piece sits, e.g. `impl Parser > fn parse_block`), language, kind, score, a short snippet and its whole text (`content`). Use it to find where something is implemented or explained; then read_file for more context.",
            schema_for_type::<SearchCodeArgs>(),
        )
        .with_annotations(read_only.clone()),
        Tool::new(
            "read_file",
            "Read a file of the project as the memory holds it (the text of the last sync, which may differ from a working copy), whole or lines start_line..=end_line. Returns the text with its line range, the file's total_lines and its git blob id. Files indexed without text (binary, too large, symbolic links) answer an error of kind `unsupported`.",
            schema_for_type::<ReadFileArgs>(),
        )
        .with_annotations(read_only.clone()),
        Tool::new(
            "list_files",
            "List the files of the project as of its last sync: path, kind (`file`, `executable`, `symlink`), size in bytes and git blob id, by path, optionally only paths matching a glob. Files indexed without text carry `skipped` (`binary`, `too_large`, `symlink`).",
            schema_for_type::<ListFilesArgs>(),
        )
        .with_annotations(read_only.clone()),
        Tool::new(
            "sync_status",
            "Say how fresh the project's memory is: the run in progress in this server (with its latest event), the newest run of any status, and the last completed run (branch, commit, when, and its counts of files added, modified, deleted, renamed).",
            schema_for_type::<SyncStatusArgs>(),
        )
        .with_annotations(read_only.clone()),
        Tool::new(
            "sync_history",
            "List the project's last sync runs, newest first: id, status, branch, commit, start and end times, error, and stats counting what changed since the run before (added, modified, deleted, renamed, unchanged files; entries written; embeddings computed and reused). Use it to ask what changed at the last sync.",
            schema_for_type::<SyncHistoryArgs>(),
        )
        .with_annotations(read_only.clone()),
        Tool::new(
            "changes",
            "Say what changed in the project between two sync runs (default: since the sync before the last one): paths added, modified, removed and renamed, and for each modified file the symbols (functions, types, sections) whose pieces were added, removed or changed. Use it to ask what changed since the last sync; then search_code or read_file, with `run` for the code as it was before.",
            schema_for_type::<ChangesArgs>(),
        )
        .with_annotations(read_only),
    ];
    if start_sync {
        tools.push(
            Tool::new(
                "start_sync",
                "Sync the project's memory with a branch of its repository now, so that searches see the latest commit. Returns the new run's id once it has started (or the queued job's id); follow it with sync_status. Fails with kind `conflict` while a sync of the project is running.",
                schema_for_type::<StartSyncArgs>(),
            )
            .with_annotations(
                ToolAnnotations::new()
                    .read_only(false)
                    .destructive(false)
                    .idempotent(true)
                    .open_world(true),
            ),
        );
    }
    tools
}

impl McpServer {
    /// A server over the projects of `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// Serves one client over this process's stdin and stdout (nothing else may write to
    /// stdout) until the client closes them.
    pub async fn serve_stdio(self) -> Result<(), Error> {
        let running = self
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| Error::backend("mcp", "starting the MCP session on stdio", e))?;
        running
            .waiting()
            .await
            .map_err(|e| Error::backend("mcp", "serving MCP on stdio", e))?;
        Ok(())
    }

    /// Who is calling: over HTTP, the tenant of the request's token; over stdio (no
    /// HTTP request), the local operator.
    fn caller(&self, context: &RequestContext<RoleServer>) -> Result<Caller, Error> {
        match context.extensions.get::<axum::http::request::Parts>() {
            Some(parts) => self
                .state
                .auth()
                .caller(parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes())),
            None => Ok(Caller::Local),
        }
    }

    /// The project `name` among those `caller` sees, or the only one when `name` is
    /// `None`. A project of another tenant answers exactly like a missing one.
    fn project<'a>(&'a self, caller: &'a Caller, name: Option<&str>) -> Result<&'a Project, Error> {
        let mut visible = self.state.visible(caller);
        let names = || {
            let names: Vec<&str> = self.state.visible(caller).map(Project::name).collect();
            if names.is_empty() {
                "there are none".to_owned()
            } else {
                format!("the projects are `{}`", names.join("`, `"))
            }
        };
        match name {
            Some(name) => visible.find(|p| p.name() == name).ok_or_else(|| {
                Error::not_found(format!(
                    "there is no project `{}`: {}",
                    name.escape_debug(),
                    names()
                ))
            }),
            None => match (visible.next(), visible.next()) {
                (Some(only), None) => Ok(only),
                (None, _) => Err(Error::not_found(
                    "there is no project here to read: the server serves none of yours",
                )),
                (Some(_), Some(_)) => {
                    Err(Error::invalid_input(format!("pass `project`: {}", names())))
                }
            },
        }
    }

    /// Runs the tool `name` with `args` for `caller`.
    async fn call(
        &self,
        caller: &Caller,
        name: &str,
        args: JsonObject,
    ) -> Result<CallToolResult, Error> {
        match name {
            "search_code" => {
                let a: SearchCodeArgs = parse(name, args)?;
                let project = self.project(caller, a.project.as_deref())?;
                let k = bounded(a.k, "k", 10, 100)?;
                let hits = service::search(
                    &self.state,
                    project,
                    &a.query,
                    k,
                    a.mode.map(Into::into),
                    a.run.map(SyncId),
                )
                .await?;
                let hits: Vec<HitJson<'_>> = hits.iter().map(HitJson::new).collect();
                Ok(structured(
                    json!({ "project": project.name(), "hits": hits }),
                ))
            }
            "read_file" => {
                let a: ReadFileArgs = parse(name, args)?;
                let project = self.project(caller, a.project.as_deref())?;
                let path = RepoPath::new(&a.path)?;
                let file =
                    service::read_file(project, path, a.start_line, a.end_line, a.run.map(SyncId))
                        .await?;
                let mut result = CallToolResult::success(vec![ContentBlock::text(&file.text)]);
                result.structured_content =
                    Some(json!({ "project": project.name(), "file": file }));
                Ok(result)
            }
            "list_files" => {
                let a: ListFilesArgs = parse(name, args)?;
                let project = self.project(caller, a.project.as_deref())?;
                let limit = bounded(a.limit, "limit", 1000, 10_000)?;
                let files =
                    service::list_files(project, a.glob.as_deref(), a.run.map(SyncId)).await?;
                let listed: Vec<_> = files
                    .iter()
                    .take(limit)
                    .map(|f| FileJson {
                        path: PathJson::new(&f.entry.path),
                        kind: f.entry.kind.as_str(),
                        size: f.entry.size,
                        blob: f.entry.blob.to_string(),
                        skipped: f.skip.map(|s| s.as_str()),
                    })
                    .collect();
                Ok(structured(json!({
                    "project": project.name(),
                    "total": files.len(),
                    "truncated": files.len() > limit,
                    "files": listed,
                })))
            }
            "sync_status" => {
                let a: SyncStatusArgs = parse(name, args)?;
                let project = self.project(caller, a.project.as_deref())?;
                Ok(structured(json!(
                    service::status(&self.state, project).await?
                )))
            }
            "sync_history" => {
                let a: SyncHistoryArgs = parse(name, args)?;
                let project = self.project(caller, a.project.as_deref())?;
                let limit = bounded(a.limit, "limit", 10, 1000)?;
                let runs = service::history(project, limit).await?;
                Ok(structured(
                    json!({ "project": project.name(), "runs": runs }),
                ))
            }
            "changes" => {
                let a: ChangesArgs = parse(name, args)?;
                let project = self.project(caller, a.project.as_deref())?;
                let changes = project
                    .store()
                    .changes(project.repo(), a.from.map(SyncId), a.to.map(SyncId))
                    .await?;
                Ok(structured(
                    json!({ "project": project.name(), "changes": changes }),
                ))
            }
            "start_sync" if self.state.mcp_start_sync() => {
                let a: StartSyncArgs = parse(name, args)?;
                let project = self.project(caller, a.project.as_deref())?;
                let started =
                    match service::start(&self.state, project, a.branch.as_deref()).await? {
                        service::Started::Running(id) => json!({ "id": id, "status": "running" }),
                        service::Started::Queued(q) => {
                            json!({ "job": q.id, "coalesced": q.coalesced, "status": "queued" })
                        }
                    };
                Ok(structured(
                    json!({ "project": project.name(), "started": started }),
                ))
            }
            "start_sync" => Err(Error::unsupported(
                "this server does not start syncs over MCP (it was started without allowing it, e.g. `projsync mcp --allow-sync`); ask its operator to sync",
            )),
            other => Err(Error::invalid_input(format!(
                "there is no tool `{}`: the tools are search_code, read_file, list_files, sync_status, sync_history, changes{}",
                other.escape_debug(),
                if self.state.mcp_start_sync() {
                    ", start_sync"
                } else {
                    ""
                }
            ))),
        }
    }

    /// The files with text of every project `caller` sees, as resources.
    async fn resources(&self, caller: &Caller) -> Result<Vec<Resource>, Error> {
        let mut resources = Vec::new();
        for project in self.state.visible(caller) {
            for file in service::list_files(project, None, None).await? {
                if file.skip.is_some() {
                    continue;
                }
                let path = &file.entry.path;
                resources.push(
                    Resource::new(resource_uri(project, path), path.to_string_lossy())
                        .with_title(format!("{} ({})", path.to_string_lossy(), project.name()))
                        .with_mime_type("text/plain")
                        .with_size(file.entry.size),
                );
            }
        }
        Ok(resources)
    }

    /// The text of the resource `uri`.
    async fn read(&self, caller: &Caller, uri: &str) -> Result<String, Error> {
        let (project, path) = parse_uri(uri)?;
        let project = self.project(caller, Some(&project))?;
        Ok(service::read_file(project, path, None, None, None)
            .await?
            .text)
    }
}

/// The URI of `path` of `project`: `projsync://PROJECT/PATH`, the path percent-encoded
/// except for its slashes.
fn resource_uri(project: &Project, path: &RepoPath) -> String {
    format!(
        "{RESOURCE_SCHEME}://{}/{}",
        project.name(),
        percent_encode(path.as_bytes(), PATH)
    )
}

/// What a path in a resource URI keeps encoded: controls, space, and the characters that
/// delimit or escape parts of a URI.
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b']')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The project and path of a resource URI.
fn parse_uri(uri: &str) -> Result<(String, RepoPath), Error> {
    let bad = || {
        Error::invalid_input(format!(
            "`{}` is not a file of this server: resource URIs are {RESOURCE_SCHEME}://PROJECT/PATH",
            uri.escape_debug()
        ))
    };
    let rest = uri
        .strip_prefix(RESOURCE_SCHEME)
        .and_then(|r| r.strip_prefix("://"))
        .ok_or_else(bad)?;
    let (project, path) = rest.split_once('/').ok_or_else(bad)?;
    let path: Vec<u8> = percent_decode_str(path).collect();
    Ok((project.to_owned(), RepoPath::from_vec(path)?))
}

/// The tool's arguments as `T`; a mismatch is invalid input naming the tool.
fn parse<T: DeserializeOwned>(tool: &str, args: JsonObject) -> Result<T, Error> {
    serde_json::from_value(serde_json::Value::Object(args)).map_err(|e| {
        Error::invalid_input(format!(
            "the arguments of `{tool}` do not fit its input schema: {e}"
        ))
    })
}

/// A count argument: `default` when absent, else from 1 to `max`.
fn bounded(value: Option<usize>, name: &str, default: usize, max: usize) -> Result<usize, Error> {
    match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(Error::invalid_input(format!(
            "`{name}` is {n}: pass a whole number from 1 to {max}"
        ))),
    }
}

fn structured(value: serde_json::Value) -> CallToolResult {
    CallToolResult::structured(value)
}

/// A failure as a tool result: `isError` and `{"error": {"kind", "message"}}`.
fn tool_error(error: &Error) -> CallToolResult {
    if crate::status_of(error.kind()).is_server_error() {
        tracing::warn!(%error, "an MCP tool failed");
    }
    CallToolResult::structured_error(json!({
        "error": { "kind": error.kind(), "message": error.to_string() }
    }))
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(
            Implementation::new("projsync", env!("CARGO_PKG_VERSION")).with_title("Project Sync"),
        )
        .with_instructions(format!(
            "Project Sync keeps the memory of code repositories (their files, in chunks with embeddings) in sync with git. Use search_code to find code by meaning or words, read_file to read a file as of the last sync, list_files to browse, and sync_status or sync_history to see how fresh the memory is and what the last syncs changed. Every tool takes `project`, optional when there is one project. Files are also resources, {RESOURCE_SCHEME}://PROJECT/PATH."
        ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools(
            self.state.mcp_start_sync(),
        )))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools(self.state.mcp_start_sync())
            .into_iter()
            .find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = match self.caller(&context) {
            Ok(caller) => caller,
            Err(e) => return Ok(tool_error(&e).into()),
        };
        let args = request.arguments.unwrap_or_default();
        let work = self.call(&caller, &request.name, args);
        // A cancelled call (`notifications/cancelled`) stops its work where it waits.
        let result = tokio::select! {
            () = context.ct.cancelled() => Err(Error::Cancelled),
            result = work => result,
        };
        Ok(result.unwrap_or_else(|e| tool_error(&e)).into())
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let caller = self.caller(&context).map_err(|e| protocol_error(&e))?;
        let start = match request.and_then(|r| r.cursor) {
            None => 0,
            Some(cursor) => cursor.parse::<usize>().map_err(|_| {
                ErrorData::invalid_params("the cursor is not one this server gave", None)
            })?,
        };
        let all = self
            .resources(&caller)
            .await
            .map_err(|e| protocol_error(&e))?;
        let end = start.saturating_add(RESOURCE_PAGE).min(all.len());
        let page = all.get(start.min(end)..end).unwrap_or_default().to_vec();
        let mut result = ListResourcesResult::with_all_items(page);
        if end < all.len() {
            result.next_cursor = Some(end.to_string());
        }
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new(format!("{RESOURCE_SCHEME}://{{project}}/{{+path}}"), "file")
                .with_title("A file of a project")
                .with_description(
                    "The text of a file as the memory holds it (the last sync): PROJECT is the project's name, PATH the file's path in the repository.",
                )
                .with_mime_type("text/plain"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let caller = self.caller(&context).map_err(|e| protocol_error(&e))?;
        match self.read(&caller, &request.uri).await {
            Ok(text) => {
                Ok(ReadResourceResult::new(vec![ResourceContents::text(text, request.uri)]).into())
            }
            Err(e) if e.kind() == sync_core::ErrorKind::NotFound => Err(
                ErrorData::resource_not_found(e.to_string(), Some(json!({ "uri": request.uri }))),
            ),
            Err(e) => Err(protocol_error(&e)),
        }
    }
}

/// An error of a request other than a tool call, as a JSON-RPC error carrying the kind.
fn protocol_error(error: &Error) -> ErrorData {
    let data = Some(json!({ "kind": error.kind() }));
    let message: Cow<'static, str> = error.to_string().into();
    match error.kind() {
        sync_core::ErrorKind::InvalidInput | sync_core::ErrorKind::Unsupported => {
            ErrorData::invalid_params(message, data)
        }
        _ => ErrorData::internal_error(message, data),
    }
}

/// The streamable HTTP service of `state`'s MCP server, for `/mcp` of the router (behind
/// [`authorize`]).
pub(crate) fn http_service(
    state: &AppState,
) -> StreamableHttpService<McpServer, LocalSessionManager> {
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(state.mcp_stop().child_token());
    if !state.auth().is_open() {
        // With tokens, a request needs its token: the DNS-rebinding defence of checking
        // `Host` (which keeps a tokenless local server to loopback names) would only
        // refuse the server's real names.
        config = config.disable_allowed_hosts();
    }
    let server = McpServer::new(state.clone());
    StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// Lets a request to `/mcp` through only with a valid token (when the server has
/// tokens); otherwise answers 401 with the API's error shape.
pub(crate) async fn authorize(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let header = request.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    match state.auth().caller(header) {
        Ok(_) => next.run(request).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_uris_round_trip() {
        for raw in ["src/lib.rs", "docs/a b#c?.md", "100%/ü.txt"] {
            let path = RepoPath::new(raw).unwrap();
            let syncer = sync_core::Syncer::new(
                Arc::new(sync_core::MemorySource::new("demo")),
                Arc::new(sync_core::MemoryStore::new()),
            )
            .unwrap();
            let project = Project::new("demo", syncer).unwrap();
            let uri = resource_uri(&project, &path);
            assert!(uri.starts_with("projsync://demo/"), "{uri}");
            assert!(!uri[16..].contains([' ', '#', '?']), "{uri}");
            assert_eq!(parse_uri(&uri).unwrap(), ("demo".to_owned(), path));
        }
        for bad in ["file:///x", "projsync://demo", "projsync:/demo/x"] {
            assert_eq!(
                parse_uri(bad).unwrap_err().kind(),
                sync_core::ErrorKind::InvalidInput,
                "{bad}"
            );
        }
    }

    #[test]
    fn every_tool_has_an_object_schema_and_a_description() {
        for allowed in [false, true] {
            let tools = tools(allowed);
            assert_eq!(tools.len(), if allowed { 7 } else { 6 });
            for tool in tools {
                assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
                assert!(
                    tool.description.as_deref().is_some_and(|d| d.len() > 80),
                    "{}",
                    tool.name
                );
                let props = tool.input_schema["properties"].as_object().unwrap();
                assert!(props.contains_key("project"), "{}", tool.name);
            }
        }
    }
}
