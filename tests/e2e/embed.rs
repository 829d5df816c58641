//! Embedders on the command line: `projsync embed`, the default MiniLM model for `run` and
//! `search`, a missing model, bad specs. The model comes from `PROJSYNC_MODEL_DIR` or the
//! project's model cache (`scripts/fetch-model`); the hub is never asked.

use std::io::Write;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use sync_git::testkit::TestRepo;

use crate::support::{Cli, json_lines};

/// The vectors `projsync embed` printed, one per line.
fn vectors(stdout: &[u8]) -> Vec<Vec<f32>> {
    json_lines(stdout)
        .into_iter()
        .map(|v| {
            v.as_array()
                .expect("a JSON array")
                .iter()
                .map(|x| x.as_f64().expect("a number") as f32)
                .collect()
        })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The example sentence-transformers publishes for all-MiniLM-L6-v2: 384-dimensional unit
/// vectors, the sunny sentence closer to the lovely weather than the stadium is.
#[test]
fn embed_with_the_default_model_gives_unit_vectors_in_order() {
    let cli = Cli::new();
    let out = cli.ok([
        "embed",
        "The weather is lovely today.",
        "It's so sunny outside!",
        "He drove to the stadium.",
    ]);
    let v = vectors(&out);
    assert_eq!(v.len(), 3, "one line per text");
    for x in &v {
        assert_eq!(x.len(), 384);
        assert!((dot(x, x) - 1.0).abs() < 1e-3, "a unit vector");
    }
    let (sunny, stadium) = (dot(&v[0], &v[1]), dot(&v[0], &v[2]));
    // Published: 0.6660 and 0.1046.
    assert!((sunny - 0.6660).abs() < 0.01, "{sunny}");
    assert!((stadium - 0.1046).abs() < 0.01, "{stadium}");
    assert!(sunny > stadium);
}

/// `-` reads one text per line from stdin, in place among the other texts.
#[test]
fn embed_dash_reads_texts_from_stdin() {
    let cli = Cli::new();
    let mut child = cli
        .command(["embed", "--embedder", "hash:16", "first", "-", "last"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("projsync starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"parse the config\r\nrender the page\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let piped = vectors(&out.stdout);
    let direct = vectors(&cli.ok([
        "embed",
        "--embedder",
        "hash:16",
        "first",
        "parse the config",
        "render the page",
        "last",
    ]));
    assert_eq!(piped.len(), 4);
    assert_eq!(piped, direct);
    assert!(piped.iter().all(|v| v.len() == 16));
}

/// `run` and `search` with the default embedder: MiniLM finds the file a natural-language
/// question is about, and `search` picks the model from the entries itself.
#[test]
fn run_and_search_with_the_default_model_find_the_right_file() {
    let repo = TestRepo::new();
    repo.write(
        "src/settings.rs",
        "/// Reads the TOML configuration file from disk and parses the user's settings.\nfn load_settings(path: &Path) -> Settings { todo!() }\n",
    )
    .write(
        "src/http.rs",
        "/// Sends an HTTP request to the server and retries when the network times out.\nfn send_request(req: Request) -> Response { todo!() }\n",
    )
    .write(
        "src/image.rs",
        "/// Resizes a photograph to a thumbnail and saves it as a PNG picture.\nfn make_thumbnail(img: &Image) -> Png { todo!() }\n",
    );
    repo.commit("three files");
    let cli = Cli::new();
    let src = repo.path().to_str().unwrap();
    let events = cli.sync_json(src, "main", &[]);
    let done = events.last().unwrap();
    assert_eq!(done["record"]["stats"]["embeddings_computed"], 3, "{done}");
    for (query, file) in [
        (
            "where are the preferences read from a config file",
            "src/settings.rs",
        ),
        ("shrink a picture", "src/image.rs"),
        ("network call with retry", "src/http.rs"),
    ] {
        let hits = json_lines(&cli.ok(["search", query, "-k", "1", "--json", "-s", src]));
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0]["path"], file, "{query}: {}", hits[0]);
    }
    // Another model's query vectors are not compared with MiniLM's: that model has no
    // vectors yet, and the error says how to compute them.
    let out = cli.run(["search", "x", "--embedder", "hash:384", "-s", src]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("projsync reembed --embedder hash-384"),
        "{}",
        stderr(&out)
    );
}

/// Without the model anywhere (and the hub off), the error names the one command that
/// fixes it and exits 3 (not found).
#[test]
fn a_missing_model_names_scripts_fetch_model() {
    let repo = TestRepo::new();
    repo.write("a.txt", "a\n");
    repo.commit("one");
    let cli = Cli::new();
    let empty = cli.dir().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let src = repo.path().to_str().unwrap();
    for args in [&["embed", "hello"][..], &["run", "-s", src]] {
        let out = cli
            .command(args)
            .env("PROJSYNC_MODEL_DIR", &empty)
            .env("XDG_CACHE_HOME", &empty)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with("error: ") && err.contains("scripts/fetch-model"),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
    assert!(
        !cli.dir().join("project-sync.db").exists(),
        "no store was created, no run started without the embedder"
    );
}

/// An embedder spec that is not one of the accepted forms is a usage error (2).
#[test]
fn a_bogus_embedder_exits_2() {
    let repo = TestRepo::new();
    repo.write("a.txt", "a\n");
    repo.commit("one");
    let cli = Cli::new();
    let src = repo.path().to_str().unwrap();
    for args in [
        &["run", "-s", src, "--embedder", "bogus"][..],
        &["embed", "--embedder", "bogus", "x"],
        &["embed", "--embedder", "none", "x"],
        &["embed", "--embedder", "hash:0", "x"],
    ] {
        let out = cli.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("hash:DIMS"), "{}", stderr(&out));
    }
    cli.sync_json(src, "main", &["--embedder", "hash:8"]);
    let out = cli.run(["search", "a", "--embedder", "bogus", "-s", src]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// What a local OpenAI-compatible server was asked, request by request.
#[derive(Default)]
struct Asked {
    /// The inputs of each request.
    inputs: Vec<Vec<String>>,
    /// The `dimensions` of each request.
    dimensions: Vec<Option<u64>>,
}

impl Asked {
    /// The tokens the server billed so far: a token per byte of every input.
    fn tokens(&self) -> u64 {
        self.inputs.iter().flatten().map(|t| t.len() as u64).sum()
    }
}

/// A local `/v1/embeddings` server: vectors of the requested `dimensions` (3 without),
/// and a `usage` of one token per byte of input.
struct EmbeddingServer {
    url: String,
    asked: Arc<Mutex<Asked>>,
    _rt: tokio::runtime::Runtime,
}

impl EmbeddingServer {
    fn start() -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let asked = Arc::new(Mutex::new(Asked::default()));
        let state = Arc::clone(&asked);
        let app = axum::Router::new().route(
            "/v1/embeddings",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let state = Arc::clone(&state);
                async move {
                    let inputs: Vec<String> = body["input"]
                        .as_array()
                        .expect("input is an array")
                        .iter()
                        .map(|t| t.as_str().expect("a string").to_owned())
                        .collect();
                    let dims = body["dimensions"].as_u64();
                    let tokens: usize = inputs.iter().map(String::len).sum();
                    let data: Vec<Value> = inputs
                        .iter()
                        .enumerate()
                        .map(|(i, t)| {
                            let mut v = vec![0.5f32; dims.unwrap_or(3) as usize];
                            v[0] = t.len() as f32;
                            json!({"object": "embedding", "index": i, "embedding": v})
                        })
                        .collect();
                    let mut asked = state.lock().unwrap();
                    asked.inputs.push(inputs);
                    asked.dimensions.push(dims);
                    axum::Json(json!({
                        "object": "list",
                        "data": data,
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                    }))
                }
            }),
        );
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        rt.spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            asked,
            _rt: rt,
        }
    }

    fn tokens(&self) -> u64 {
        self.asked.lock().unwrap().tokens()
    }
}

/// `--embedder openai:MODEL --embed-dimensions N` asks the server for N dimensions and
/// takes N as the length of a model it does not know; the tokens the server billed are in
/// the run's stats (`--json`), its text summary, and `reembed`'s.
#[test]
fn openai_runs_send_dimensions_and_report_the_tokens_billed() {
    let server = EmbeddingServer::start();
    let repo = TestRepo::new();
    repo.write("src/config.rs", "fn parse_config() {}\n")
        .write("src/render.rs", "fn render_page() {}\n")
        .write("README.md", "# demo\nA small project.\n");
    repo.commit("three files");
    let cli = Cli::new();
    let src = repo.path().to_str().unwrap();
    let openai = |model: &str| {
        vec![
            "--embedder".to_owned(),
            format!("openai:{model}"),
            "--embed-url".to_owned(),
            server.url.clone(),
            "--embed-dimensions".to_owned(),
            "6".to_owned(),
        ]
    };
    let run = |extra: &[&str], model: &str| {
        let mut args: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        args.extend(openai(model));
        cli.command(&args)
            .env("OPENAI_API_KEY", "sk-e2e-test")
            .output()
            .unwrap()
    };

    let out = run(&["run", "-s", src, "--json"], "house-model");
    assert!(out.status.success(), "{}", stderr(&out));
    let events = json_lines(&out.stdout);
    let stats = &events.last().unwrap()["record"]["stats"];
    let billed = server.tokens();
    assert!(billed > 0);
    assert_eq!(stats["embedding_tokens"], billed, "{stats}");
    assert_eq!(stats["embeddings_computed"], 3, "{stats}");
    {
        let asked = server.asked.lock().unwrap();
        assert!(
            asked.dimensions.iter().all(|d| *d == Some(6)),
            "{:?}",
            asked.dimensions
        );
    }

    // The text summary of the next run counts only its own tokens.
    repo.write("src/network.rs", "fn send_request() {}\n");
    repo.commit("a fourth file");
    let out = run(&["run", "-s", src], "house-model");
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    let these = server.tokens() - billed;
    assert_eq!(these, "fn send_request() {}\n".len() as u64);
    assert!(
        summary.contains(&format!(
            "1 texts embedded ({these} tokens), 0 embeddings reused"
        )),
        "{summary}"
    );

    let before = server.tokens();
    let out = run(&["reembed", "-s", src, "--json"], "other-model");
    assert!(out.status.success(), "{}", stderr(&out));
    let json = &json_lines(&out.stdout)[0];
    assert_eq!(json["computed"], 4, "{json}");
    assert_eq!(json["tokens"], server.tokens() - before, "{json}");
    let out = run(&["reembed", "-s", src], "third-model");
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        summary.contains(&format!(
            "computed 4 embeddings ({} tokens)",
            server.tokens() - before - json["tokens"].as_u64().unwrap()
        )),
        "{summary}"
    );

    // Vectors have the length asked for.
    let v = vectors(&{
        let mut args = vec!["embed".to_owned(), "hello".to_owned()];
        args.extend(openai("house-model"));
        let out = cli
            .command(&args)
            .env("OPENAI_API_KEY", "sk-e2e-test")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        out.stdout
    });
    assert_eq!(v[0].len(), 6);

    // Shortened vectors are kept under their own name, `house-model@6`: a search names
    // the embedder that computes them.
    let out = cli.run(["search", "parse config", "-s", src]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`house-model@6`")
            && stderr(&out).contains("`--embedder openai:house-model --embed-dimensions 6`"),
        "{}",
        stderr(&out)
    );
    let out = run(&["search", "parse config", "-s", src], "house-model");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `--embed-dimensions` with an embedder that is not `openai:MODEL` is a usage error (2)
/// naming the option, before any store is made.
#[test]
fn embed_dimensions_without_openai_exits_2() {
    let cli = Cli::new();
    for spec in ["minilm", "hash:8", "hash"] {
        let out = cli.run(["embed", "x", "--embedder", spec, "--embed-dimensions", "8"]);
        assert_eq!(out.status.code(), Some(2), "{spec}: {}", stderr(&out));
        assert!(
            stderr(&out)
                .contains("--embed-dimensions 8` applies to `--embedder openai:MODEL` only"),
            "{}",
            stderr(&out)
        );
    }
    let repo = TestRepo::new();
    repo.write("a.txt", "a\n");
    repo.commit("one");
    let src = repo.path().to_str().unwrap();
    let out = cli.run([
        "run",
        "-s",
        src,
        "--embedder",
        "none",
        "--embed-dimensions",
        "8",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--embed-dimensions"),
        "{}",
        stderr(&out)
    );
    let out = cli.run([
        "embed",
        "x",
        "--embedder",
        "openai:m",
        "--embed-dimensions",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        !cli.dir().join("project-sync.db").exists(),
        "no store was created"
    );
}
