//! `projsync mcp` driven by the official Rust SDK's client as a real assistant drives it:
//! the binary spawned as a child process speaking MCP on stdin and stdout, over a real git
//! repository synced into a real SQLite file. And `/mcp` of `projsync serve` over
//! streamable HTTP, with a tenant's token, with a wrong one and without one.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest, ErrorCode, JsonObject,
    ReadResourceRequestParams, ResourceContents,
};
use rmcp::service::{PeerRequestOptions, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use sync_git::testkit::TestRepo;

mod support;
use support::wait_for;

/// The embedder of every command here: offline and instant.
const EMBEDDER: &str = "hash:64";

type Client = RunningService<RoleClient, ()>;

fn projsync(db: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_projsync"));
    cmd.arg("--db")
        .arg(db)
        .env_remove("PROJSYNC_SOURCE")
        .env_remove("PROJSYNC_DB")
        .env_remove("PROJSYNC_TENANT")
        .env_remove("PROJSYNC_TOKENS")
        .env_remove("PROJSYNC_WEBHOOK_SECRET")
        .env("RUST_LOG", "warn");
    cmd
}

/// Syncs the repository at `source` into `db`.
fn sync(db: &Path, source: &Path) {
    sync_as(db, source, "default");
}

/// Syncs the repository at `source` into `db`, under `tenant`.
fn sync_as(db: &Path, source: &Path, tenant: &str) {
    let out = projsync(db)
        .arg("--source")
        .arg(source)
        .args(["--tenant", tenant, "run", "--embedder", EMBEDDER])
        .stdin(Stdio::null())
        .output()
        .expect("projsync runs");
    assert!(
        out.status.success(),
        "projsync run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A repository with code, a document and a binary file, synced twice: `src/lib.rs`
/// modified and `docs/guide.md` added by the second commit.
struct Fixture {
    repo: TestRepo,
    dir: tempfile::TempDir,
}

const LIB_V1: &str = "/// The answer.\npub fn answer() -> u32 {\n    42\n}\n";
const LIB_V2: &str = "/// The answer.\npub fn answer() -> u32 {\n    42\n}\n\n/// Parses a config line into its key and value.\npub fn parse_config_line(line: &str) -> Option<(&str, &str)> {\n    line.split_once('=')\n}\n";
const GUIDE: &str =
    "# Guide\n\nHow to configure the parser.\n\n## Keys\n\nOne `key=value` per line.\n";

/// A file of many functions, kept in several entries.
fn big() -> String {
    (0..120)
        .map(|i| {
            format!(
                "/// Step {i} of the pipeline.\npub fn step_{i}(input: u64) -> u64 {{\n    let doubled = input * 2 + {i};\n    doubled.rotate_left({i} % 7)\n}}\n\n"
            )
        })
        .collect()
}

impl Fixture {
    fn new() -> Self {
        let repo = TestRepo::new();
        repo.write("src/lib.rs", LIB_V1)
            .write("src/big.rs", big())
            .write("README.md", "# Demo\n\nA demo.\n")
            .write("logo.bin", b"\x89PNG\0\0\0binary");
        repo.commit("first");
        let dir = tempfile::tempdir().unwrap();
        let fixture = Self { repo, dir };
        sync(&fixture.db(), fixture.repo.path());
        fixture
            .repo
            .write("src/lib.rs", LIB_V2)
            .write("docs/guide.md", GUIDE);
        fixture.repo.commit("second");
        sync(&fixture.db(), fixture.repo.path());
        fixture
    }

    fn db(&self) -> std::path::PathBuf {
        self.dir.path().join("memory.db")
    }

    /// The project's name: the repository's directory.
    fn project(&self) -> String {
        self.repo
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// `projsync mcp` on this repository, connected to the SDK's client.
    async fn client(&self, extra: &[&str]) -> Client {
        let db = self.db();
        let source = self.repo.path().to_owned();
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let command =
            tokio::process::Command::new(env!("CARGO_BIN_EXE_projsync")).configure(move |cmd| {
                cmd.arg("--db")
                    .arg(&db)
                    .arg("--source")
                    .arg(&source)
                    .args(["mcp", "--embedder", EMBEDDER])
                    .args(&extra)
                    .env_remove("PROJSYNC_TOKENS")
                    .env("RUST_LOG", "warn");
            });
        let (transport, _stderr) = TokioChildProcess::builder(command)
            .stderr(Stdio::null())
            .spawn()
            .expect("projsync mcp starts");
        ().serve(transport).await.expect("the MCP handshake")
    }
}

/// How many active entries the store keeps for `path` (read with the library itself).
fn entry_count(fx: &Fixture, path: &str) -> usize {
    let db = fx.db();
    let source = fx.repo.path().to_owned();
    let path = sync_core::RepoPath::new(path).unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let store = sync_sqlite::SqliteConfig::parse(db.to_str().unwrap())
                    .unwrap()
                    .open()
                    .await
                    .unwrap();
                let source = sync_git::GitSource::open(&source).unwrap();
                let key =
                    sync_core::RepoKey::new(sync_core::RepoSource::identity(&source)).unwrap();
                sync_core::SyncStore::entries(&store, &key, &sync_core::EntryQuery::path(path))
                    .await
                    .unwrap()
                    .len()
            })
    })
    .join()
    .unwrap()
}

fn args(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Calls `tool`, expecting success; its structured result.
async fn call(client: &Client, tool: &'static str, arguments: Value) -> Value {
    let result = client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(args(arguments)))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert_eq!(result.is_error, Some(false), "{tool}: {result:?}");
    result
        .structured_content
        .unwrap_or_else(|| panic!("{tool} gave no structured content"))
}

/// Calls `tool`, expecting a tool error; its kind and message.
async fn call_err(client: &Client, tool: &'static str, arguments: Value) -> (String, String) {
    let result: CallToolResult = client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(args(arguments)))
        .await
        .unwrap_or_else(|e| panic!("{tool} is a tool error, not a protocol error: {e}"));
    assert_eq!(result.is_error, Some(true), "{tool}: {result:?}");
    let error = &result.structured_content.expect("an error body")["error"];
    (
        error["kind"].as_str().unwrap().to_owned(),
        error["message"].as_str().unwrap().to_owned(),
    )
}

/// `git ls-tree -r -l HEAD`: path → (blob, size).
fn tree(repo: &TestRepo) -> BTreeMap<String, (String, u64)> {
    repo.git(["ls-tree", "-r", "-l", "HEAD"])
        .lines()
        .map(|line| {
            let (meta, path) = line.split_once('\t').unwrap();
            let fields: Vec<&str> = meta.split_whitespace().collect();
            (
                path.to_owned(),
                (fields[2].to_owned(), fields[3].parse().unwrap()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tools_are_listed_with_schemas_and_each_answers() {
    let fx = Fixture::new();
    let client = fx.client(&[]).await;

    // The tools and their schemas: read-only by default, no start_sync.
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "search_code",
            "read_file",
            "list_files",
            "sync_status",
            "sync_history",
            "changes"
        ]
    );
    for tool in &tools {
        let schema = &tool.input_schema;
        assert_eq!(schema["type"], "object", "{}", tool.name);
        assert!(schema["properties"]["project"].is_object(), "{}", tool.name);
        assert_eq!(schema["additionalProperties"], false, "{}", tool.name);
        assert!(
            tool.description.as_deref().unwrap_or("").len() > 80,
            "{} needs a description a model can choose by",
            tool.name
        );
        assert_eq!(
            tool.annotations.as_ref().and_then(|a| a.read_only_hint),
            Some(true),
            "{}",
            tool.name
        );
    }
    let search = &tools[0].input_schema;
    assert_eq!(search["required"], json!(["query"]));
    let modes = serde_json::to_string(&search["properties"]["mode"]).unwrap();
    for mode in ["hybrid", "vector", "lexical"] {
        assert!(modes.contains(mode), "{modes}");
    }
    assert_eq!(tools[1].input_schema["required"], json!(["path"]));

    // search_code: the new function, with its lines and symbol path.
    let found = call(
        &client,
        "search_code",
        json!({"query": "parse_config_line", "k": 3, "mode": "lexical"}),
    )
    .await;
    assert_eq!(found["project"], fx.project());
    let hits = found["hits"].as_array().unwrap();
    assert!(!hits.is_empty() && hits.len() <= 3, "{found}");
    let top = &hits[0];
    assert_eq!(top["path"], "src/lib.rs", "{found}");
    let (start, end) = (
        top["start_line"].as_u64().unwrap(),
        top["end_line"].as_u64().unwrap(),
    );
    assert!(start <= 7 && (7..=9).contains(&end), "{top}");
    assert!(
        top["content"]
            .as_str()
            .unwrap()
            .contains("fn parse_config_line")
    );
    assert!(!top["snippet"].as_str().unwrap().is_empty(), "{top}");
    // Hits say where they sit in the document: the symbol path of a section.
    let found = call(
        &client,
        "search_code",
        json!({"query": "Demo", "mode": "lexical"}),
    )
    .await;
    let top = &found["hits"][0];
    assert_eq!(
        (&top["path"], &top["symbol"], &top["kind"]),
        (&json!("README.md"), &json!("Demo"), &json!("section")),
        "{found}"
    );
    // The default mode embeds the query with the server's embedder.
    let hybrid = call(&client, "search_code", json!({"query": "configure keys"})).await;
    assert!(!hybrid["hits"].as_array().unwrap().is_empty(), "{hybrid}");

    // read_file: the text as git has it, whole and by lines.
    let whole = call(&client, "read_file", json!({"path": "src/lib.rs"})).await;
    assert_eq!(whole["file"]["text"], LIB_V2);
    assert_eq!(whole["file"]["total_lines"], 9);
    assert_eq!(
        whole["file"]["blob"],
        tree(&fx.repo)["src/lib.rs"].0.as_str()
    );
    let some = call(
        &client,
        "read_file",
        json!({"path": "src/lib.rs", "start_line": 6, "end_line": 7}),
    )
    .await;
    let lines: Vec<&str> = LIB_V2.split_inclusive('\n').collect();
    assert_eq!(some["file"]["text"], lines[5..7].concat());
    assert_eq!(
        (&some["file"]["start_line"], &some["file"]["end_line"]),
        (&json!(6), &json!(7))
    );
    let guide = client
        .call_tool(
            CallToolRequestParams::new("read_file")
                .with_arguments(args(json!({"path": "docs/guide.md", "start_line": 5}))),
        )
        .await
        .unwrap();
    assert_eq!(
        guide.content[0].as_text().map(|t| t.text.as_str()),
        Some("## Keys\n\nOne `key=value` per line.\n"),
        "the text itself is the tool's content"
    );

    // Every file with text reads back exactly as git has it.
    for path in tree(&fx.repo).keys().filter(|p| *p != "logo.bin") {
        let read = call(&client, "read_file", json!({"path": path})).await;
        let git = fx.repo.git_input(["show", &format!("HEAD:{path}")], b"");
        assert_eq!(
            read["file"]["text"],
            String::from_utf8(git).unwrap(),
            "{path}"
        );
    }

    // A file kept in several entries: rebuilt whole, and lines across their seams.
    let big_text = big();
    let chunks = entry_count(&fx, "src/big.rs");
    assert!(chunks > 2, "src/big.rs is kept in {chunks} entries");
    let lines: Vec<&str> = big_text.split_inclusive('\n').collect();
    for (start, end) in [(1, lines.len()), (100, 500), (lines.len() - 3, lines.len())] {
        let read = call(
            &client,
            "read_file",
            json!({"path": "src/big.rs", "start_line": start, "end_line": end}),
        )
        .await;
        assert_eq!(
            read["file"]["text"],
            lines[start - 1..end].concat(),
            "{start}-{end}"
        );
        assert_eq!(read["file"]["total_lines"], lines.len());
    }

    // list_files: the tree, with kinds and sizes; a glob narrows it.
    let listed = call(&client, "list_files", json!({})).await;
    let oracle = tree(&fx.repo);
    assert_eq!(listed["total"], oracle.len());
    let files = listed["files"].as_array().unwrap();
    for file in files {
        let path = file["path"].as_str().unwrap();
        let (blob, size) = &oracle[path];
        assert_eq!(file["blob"], blob.as_str(), "{path}");
        assert_eq!(file["size"], *size, "{path}");
        assert_eq!(file["kind"], "file", "{path}");
    }
    let skipped: Vec<&Value> = files.iter().filter(|f| !f["skipped"].is_null()).collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(
        (&skipped[0]["path"], &skipped[0]["skipped"]),
        (&json!("logo.bin"), &json!("binary"))
    );
    let md = call(&client, "list_files", json!({"glob": "**/*.md"})).await;
    let md: Vec<&str> = md["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(md, ["README.md", "docs/guide.md"]);
    let one = call(&client, "list_files", json!({"limit": 1})).await;
    assert_eq!(
        (one["files"].as_array().unwrap().len(), &one["truncated"]),
        (1, &json!(true))
    );

    // sync_status and sync_history: what the last sync was and what it changed.
    let head = fx.repo.rev_parse("HEAD").to_hex();
    let status = call(&client, "sync_status", json!({})).await;
    assert!(status["running"].is_null(), "{status}");
    assert_eq!(
        status["last_completed"]["commit"],
        head.as_str(),
        "{status}"
    );
    assert_eq!(status["latest"]["id"], status["last_completed"]["id"]);
    let history = call(&client, "sync_history", json!({"limit": 5})).await;
    let runs = history["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{history}");
    assert_eq!(runs[0]["commit"], head.as_str());
    let stats = &runs[0]["stats"];
    assert_eq!(
        (&stats["added"], &stats["modified"], &stats["deleted"]),
        (&json!(1), &json!(1), &json!(0)),
        "{stats}"
    );
    assert_eq!(runs[1]["stats"]["added"], 4);

    // Files are resources: listed (those with text) and read.
    let resources = client.list_all_resources().await.unwrap();
    let uris: Vec<&str> = resources.iter().map(|r| r.uri.as_str()).collect();
    let p = fx.project();
    assert_eq!(
        uris,
        [
            format!("projsync://{p}/README.md"),
            format!("projsync://{p}/docs/guide.md"),
            format!("projsync://{p}/src/big.rs"),
            format!("projsync://{p}/src/lib.rs"),
        ]
    );
    let templates = client.list_all_resource_templates().await.unwrap();
    assert_eq!(templates.len(), 1);
    assert!(
        templates[0]
            .uri_template
            .starts_with("projsync://{project}/")
    );
    let read = client
        .read_resource(ReadResourceRequestParams::new(format!(
            "projsync://{p}/src/lib.rs"
        )))
        .await
        .unwrap();
    match &read.contents[..] {
        [ResourceContents::TextResourceContents { text, .. }] => assert_eq!(text, LIB_V2),
        other => panic!("not one text: {other:?}"),
    }

    // Without --allow-sync, start_sync is refused as a tool error.
    let (kind, message) = call_err(&client, "start_sync", json!({})).await;
    assert_eq!(kind, "unsupported", "{message}");
    assert!(message.contains("--allow-sync"), "{message}");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_tool_errors_and_the_server_keeps_serving() {
    let fx = Fixture::new();
    let client = fx.client(&[]).await;
    let p = fx.project();

    let cases = [
        (
            "read_file",
            json!({"project": "elsewhere", "path": "src/lib.rs"}),
            "not_found",
            p.as_str(),
        ),
        (
            "read_file",
            json!({"path": "src/nope.rs"}),
            "not_found",
            "list_files",
        ),
        (
            "read_file",
            json!({"path": "logo.bin"}),
            "unsupported",
            "binary",
        ),
        (
            "read_file",
            json!({"path": "src/lib.rs", "start_line": 40}),
            "invalid_input",
            "9 lines",
        ),
        (
            "read_file",
            json!({"path": "src/lib.rs", "start_line": 5, "end_line": 2}),
            "invalid_input",
            "before",
        ),
        ("read_file", json!({}), "invalid_input", "`path`"),
        (
            "search_code",
            json!({"query": "x", "k": 0}),
            "invalid_input",
            "`k`",
        ),
        (
            "search_code",
            json!({"query": 7}),
            "invalid_input",
            "search_code",
        ),
        (
            "search_code",
            json!({"query": "x", "mode": "fuzzy"}),
            "invalid_input",
            "fuzzy",
        ),
        (
            "search_code",
            json!({"query": "  "}),
            "invalid_input",
            "empty",
        ),
        (
            "list_files",
            json!({"glob": "src/[oops"}),
            "invalid_input",
            "glob",
        ),
        (
            "sync_history",
            json!({"limit": 5000}),
            "invalid_input",
            "1000",
        ),
        (
            "sync_status",
            json!({"bogus": true}),
            "invalid_input",
            "bogus",
        ),
    ];
    for (tool, arguments, kind, says) in cases {
        let (got, message) = call_err(&client, tool, arguments.clone()).await;
        assert_eq!(got, kind, "{tool} {arguments}: {message}");
        assert!(message.contains(says), "{tool} {arguments}: {message}");
    }

    // An unknown resource is the protocol's "resource not found".
    let missing = client
        .read_resource(ReadResourceRequestParams::new(format!(
            "projsync://{p}/src/nope.rs"
        )))
        .await
        .unwrap_err();
    match missing {
        rmcp::ServiceError::McpError(e) => assert_eq!(e.code, ErrorCode::RESOURCE_NOT_FOUND),
        other => panic!("not an MCP error: {other}"),
    }

    // After all of that, the server still answers.
    let read = call(&client, "read_file", json!({"path": "README.md"})).await;
    assert_eq!(read["file"]["text"], "# Demo\n\nA demo.\n");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_leaves_the_server_serving() {
    let fx = Fixture::new();
    let client = fx.client(&[]).await;
    for _ in 0..3 {
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(
            CallToolRequestParams::new("search_code")
                .with_arguments(args(json!({"query": "answer parse config"}))),
        ));
        let handle = client
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
            .unwrap();
        handle
            .cancel(Some("the user moved on".into()))
            .await
            .unwrap();
    }
    // The next calls are answered, in full.
    let listed = call(&client, "list_files", json!({"glob": "src/*"})).await;
    assert_eq!(listed["total"], 2, "{listed}");
    let status = call(&client, "sync_status", json!({})).await;
    assert_eq!(status["last_completed"]["status"], "completed");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_allow_sync_an_assistant_syncs_and_sees_what_changed() {
    let fx = Fixture::new();
    let client = fx.client(&["--allow-sync"]).await;
    let tools = client.list_all_tools().await.unwrap();
    let start = tools
        .iter()
        .find(|t| t.name == "start_sync")
        .expect("start_sync is offered");
    assert!(start.input_schema["properties"]["branch"].is_object());

    fx.repo.remove("README.md").write("src/lib.rs", LIB_V1);
    let head = fx.repo.commit("third").to_hex();
    let started = call(&client, "start_sync", json!({})).await;
    assert_eq!(started["started"]["status"], "running", "{started}");
    let id = started["started"]["id"].clone();

    let status = wait_for("the sync to complete", Duration::from_secs(60), || async {
        let status = call(&client, "sync_status", json!({})).await;
        (status["last_completed"]["id"] == id).then_some(status)
    })
    .await;
    assert_eq!(status["last_completed"]["commit"], head.as_str());

    // What changed since the sync before, and the memory is the new commit's.
    let history = call(&client, "sync_history", json!({"limit": 1})).await;
    let stats = &history["runs"][0]["stats"];
    assert_eq!(
        (&stats["added"], &stats["modified"], &stats["deleted"]),
        (&json!(0), &json!(1), &json!(1)),
        "{stats}"
    );
    let read = call(&client, "read_file", json!({"path": "src/lib.rs"})).await;
    assert_eq!(read["file"]["text"], LIB_V1);
    let (kind, _) = call_err(&client, "read_file", json!({"path": "README.md"})).await;
    assert_eq!(kind, "not_found");

    // What changed, symbol by symbol, and the memory as it was before, by its run.
    let changes = call(&client, "changes", json!({})).await;
    let changes = &changes["changes"];
    assert_eq!(changes["to"], id, "{changes}");
    assert_eq!(changes["removed"], json!(["README.md"]), "{changes}");
    // (The file is one chunk: no symbol of its own changed; the conformance suite checks
    // symbols.)
    assert_eq!(changes["modified"][0]["path"], "src/lib.rs", "{changes}");
    let before = changes["from"].as_i64().expect("the run before");
    let old = call(
        &client,
        "read_file",
        json!({"path": "README.md", "run": before}),
    )
    .await;
    assert_eq!(old["file"]["text"], "# Demo\n\nA demo.\n", "{old}");
    let found = |hits: &serde_json::Value| {
        hits["hits"].as_array().unwrap().iter().any(|h| {
            h["content"]
                .as_str()
                .unwrap()
                .contains("fn parse_config_line")
        })
    };
    let query = json!({"query": "parse_config_line", "mode": "lexical"});
    assert!(!found(&call(&client, "search_code", query.clone()).await));
    let mut then = query;
    then["run"] = json!(before);
    assert!(
        found(&call(&client, "search_code", then).await),
        "found as of the run before"
    );
    let listed = call(&client, "list_files", json!({"run": before})).await;
    assert!(listed.to_string().contains("README.md"), "{listed}");
    client.cancel().await.unwrap();
}

/// `projsync serve` in the background, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves two projects of two tenants, each with its token, over `/mcp`.
fn serve(fx: &Fixture, other: &TestRepo) -> Server {
    let config = fx.dir.path().join("serve.toml");
    let (web_db, other_db) = (fx.dir.path().join("web.db"), fx.dir.path().join("other.db"));
    sync_as(&web_db, fx.repo.path(), "acme");
    sync_as(&other_db, other.path(), "beta");
    std::fs::write(
        &config,
        format!(
            "[[project]]\nname = \"web\"\nsource = {:?}\ndb = {:?}\ntenant = \"acme\"\n\n[[project]]\nname = \"secret\"\nsource = {:?}\ndb = {:?}\ntenant = \"beta\"\n\n[[token]]\ntenant = \"acme\"\ntoken = \"acme-token\"\n\n[[token]]\ntenant = \"beta\"\ntoken = \"beta-token\"\n",
            fx.repo.path(),
            web_db,
            other.path(),
            other_db,
        ),
    )
    .unwrap();
    let mut child = projsync(&fx.db())
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--embedder",
            EMBEDDER,
            "--allow-sync",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("projsync serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Server { child, url }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mcp_needs_a_token_and_shows_and_syncs_its_tenants_projects_only() {
    let fx = Fixture::new();
    let other = TestRepo::new();
    other.write("private.txt", "beta's secret plans\n");
    other.commit("beta");
    let server = serve(&fx, &other);
    let mcp = format!("{}/mcp", server.url);

    // Without a token, or with a wrong one: 401 before anything MCP.
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "test", "version": "0"}}
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    for token in [None, Some("wrong-token")] {
        let mut request = http
            .post(&mcp)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "token {token:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["kind"], "unauthorized", "{body}");
    }

    // With acme's token, the SDK's client sees acme's project alone.
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(mcp.as_str()).auth_header("acme-token"),
    );
    let client = ().serve(transport).await.expect("the MCP handshake over HTTP");
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 7, "the six, and start_sync (--allow-sync)");
    let read = call(&client, "read_file", json!({"path": "src/lib.rs"})).await;
    assert_eq!(read["project"], "web");
    assert_eq!(read["file"]["text"], LIB_V2);
    let (kind, message) = call_err(
        &client,
        "read_file",
        json!({"project": "secret", "path": "private.txt"}),
    )
    .await;
    assert_eq!(kind, "not_found");
    // Exactly the answer for a project that does not exist.
    let (_, missing) = call_err(
        &client,
        "read_file",
        json!({"project": "nosuch", "path": "private.txt"}),
    )
    .await;
    assert_eq!(message, missing.replace("nosuch", "secret"));
    assert!(message.ends_with("the projects are `web`"), "{message}");
    // Nor can acme's token sync beta's project.
    let (kind, _) = call_err(&client, "start_sync", json!({"project": "secret"})).await;
    assert_eq!(kind, "not_found");
    let uris: Vec<String> = client
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uri)
        .collect();
    assert!(
        !uris.is_empty() && uris.iter().all(|u| u.starts_with("projsync://web/")),
        "{uris:?}"
    );
    let found = call(
        &client,
        "search_code",
        json!({"query": "secret plans", "mode": "lexical"}),
    )
    .await;
    assert!(
        found["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["path"] != "private.txt"),
        "{found}"
    );
    client.cancel().await.unwrap();

    // beta's token reads beta's project, named or not.
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(mcp.as_str()).auth_header("beta-token"),
    );
    let client = ().serve(transport).await.unwrap();
    let read = call(&client, "read_file", json!({"path": "private.txt"})).await;
    assert_eq!(read["project"], "secret");
    let result = client
        .call_tool(CallToolRequestParams::new("sync_status").with_arguments(args(json!({}))))
        .await
        .unwrap();
    assert!(matches!(
        result.structured_content,
        Some(ref s) if s["project"] == "secret"
    ));
    // A sync started over HTTP runs in the server, into beta's store.
    other.write("plans/next.txt", "beta's next plans\n");
    let head = other.commit("next").to_hex();
    let started = call(&client, "start_sync", json!({})).await;
    assert_eq!(started["started"]["status"], "running", "{started}");
    let id = started["started"]["id"].clone();
    let status = wait_for("the sync to complete", Duration::from_secs(60), || async {
        let status = call(&client, "sync_status", json!({})).await;
        (status["last_completed"]["id"] == id).then_some(status)
    })
    .await;
    assert_eq!(status["last_completed"]["commit"], head.as_str());
    let read = call(&client, "read_file", json!({"path": "plans/next.txt"})).await;
    assert_eq!(read["file"]["text"], "beta's next plans\n");
    client.cancel().await.unwrap();
}
