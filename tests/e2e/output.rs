//! What `projsync` prints: paths quoted as git quotes them (raw with `-z`), `--json` on
//! every command, and never a database password.

use serde_json::Value;
use sync_git::testkit::TestRepo;

use crate::support::{Cli, NO_EMBEDDER, json_lines, ls_oracle, ls_oracle_z, postgres_url, show};

/// Paths no line-based listing survives unquoted, staged with their exact bytes.
const ODD_PATHS: [&[u8]; 9] = [
    b"with\nnewline.txt",
    b"tab\there.txt",
    b"say \"hi\".txt",
    b"back\\slash.txt",
    b"ctrl\x01\x07\x1b.txt",
    b"del\x7f.txt",
    "naïve ✓.md".as_bytes(),
    b"latin1-\xe9.txt",
    b"dir\nwith newline/inner.txt",
];

/// A file name holding every byte a path component can hold (all but NUL and `/`).
fn every_byte() -> Vec<u8> {
    let mut name = b"every-byte-".to_vec();
    name.extend((1..=u8::MAX).filter(|&b| b != b'/'));
    name
}

/// The odd paths, the name of every byte, and two plain files.
const FILES: usize = ODD_PATHS.len() + 3;

fn odd_repo() -> (TestRepo, sync_core::CommitId) {
    let repo = TestRepo::new();
    repo.write("plain.txt", "plain\n")
        .write("dir with spaces/a b.txt", "spaces\n");
    for (i, path) in ODD_PATHS.iter().enumerate() {
        repo.stage_raw(path, 0o100644, format!("odd file {i}\n").as_bytes());
    }
    repo.stage_raw(&every_byte(), 0o100644, b"every byte\n");
    let commit = repo.commit("odd paths");
    (repo, commit)
}

/// A path with a newline (and every other kind of unusual byte) is quoted by `ls` exactly as
/// git quotes it, one line per file; `ls -z` gives the raw bytes, NUL-terminated.
#[test]
fn ls_quotes_unusual_paths_like_git_and_z_keeps_them_raw() {
    let (repo, commit) = odd_repo();
    let cli = Cli::new();
    let src = repo.path().to_str().unwrap();
    cli.sync_json(src, "main", NO_EMBEDDER);

    let ls = cli.ls(src);
    assert_eq!(
        show(&ls),
        show(&ls_oracle(repo.path(), &commit)),
        "ls quotes as git ls-tree does"
    );
    let text = String::from_utf8(ls).expect("quoted output is ASCII");
    assert_eq!(text.lines().count(), FILES, "one line per file");
    assert!(
        text.lines()
            .any(|l| l.starts_with("\"with\\nnewline.txt\"\t")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("\"latin1-\\351.txt\"\t")),
        "{text}"
    );
    assert!(text.contains("\nplain.txt\t"), "{text}");

    let z = cli.ls_z(src);
    assert_eq!(z, ls_oracle_z(repo.path(), &commit), "ls -z: {}", show(&z));
    let records: Vec<&[u8]> = z.split(|&b| b == 0).filter(|r| !r.is_empty()).collect();
    assert_eq!(records.len(), FILES);
    for path in ODD_PATHS.into_iter().chain([every_byte().as_slice()]) {
        let mut prefix = path.to_vec();
        prefix.push(b'\t');
        assert!(
            records.iter().any(|r| r.starts_with(&prefix)),
            "{} is listed raw",
            String::from_utf8_lossy(path).escape_debug()
        );
    }

    // JSON: a string path always; the exact bytes too when it is not UTF-8.
    let json = json_lines(&cli.ok(["ls", "--json", "-s", src]));
    assert_eq!(json.len(), FILES);
    let newline = json
        .iter()
        .find(|f| f["path"] == "with\nnewline.txt")
        .unwrap();
    assert!(newline.get("path_bytes").is_none(), "{newline}");
    assert_eq!(newline["kind"], "file");
    assert_eq!(newline["size"], 11);
    let latin1 = json
        .iter()
        .find(|f| f["path"] == "latin1-\u{fffd}.txt")
        .expect("the non-UTF-8 path is listed");
    let bytes: Vec<u8> = latin1["path_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
        .collect();
    assert_eq!(bytes, b"latin1-\xe9.txt");
    assert_eq!(
        json.iter()
            .filter(|f| f.get("path_bytes").is_some())
            .count(),
        2,
        "the latin-1 name and the name of every byte are not UTF-8"
    );
}

/// `--json` on every command prints one JSON object per line, each parsing alone.
#[test]
fn every_command_speaks_json_lines() {
    let repo = TestRepo::new();
    repo.write(
        "src/parser.rs",
        "fn parse_config(input: &str) -> Config { todo }\n",
    )
    .write("src/render.rs", "fn render_page(page: &Page) -> Html {}\n");
    let first = repo.commit("first");
    repo.branch("feature/x");
    repo.checkout("main");
    repo.write("src/render.rs", "fn render_site() {}\n");
    let second = repo.commit("second");
    let cli = Cli::new();
    let src = repo.path().to_str().unwrap();

    // run: SyncEvents, the last one completed.
    let events = cli.sync_json(src, "feature/x", &["--embedder", "hash:64"]);
    assert_eq!(events[0]["event"], "started");
    let first_run = events.last().unwrap()["record"]["id"].clone();
    cli.sync_json(src, "main", &["--embedder", "hash:64"]);

    // ls: one object per file.
    let files = json_lines(&cli.ok(["--source", src, "ls", "--json"]));
    let paths: Vec<&Value> = files.iter().map(|f| &f["path"]).collect();
    assert_eq!(paths, ["src/parser.rs", "src/render.rs"]);
    assert!(
        files
            .iter()
            .all(|f| f["blob"].as_str().unwrap().len() == 40)
    );

    // history: one SyncRecord per run, newest first.
    let runs = json_lines(&cli.ok(["history", "--json", "-s", src]));
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["commit"], second.to_hex());
    assert_eq!(runs[1]["commit"], first.to_hex());

    // branches: name, commit, default.
    let branches = json_lines(&cli.ok(["branches", "--json", "-s", src]));
    assert_eq!(
        branches,
        [
            serde_json::json!({"name": "feature/x", "commit": first.to_hex(), "default": false}),
            serde_json::json!({"name": "main", "commit": second.to_hex(), "default": true}),
        ]
    );

    // search: one hit per line, with its text.
    let hits = json_lines(&cli.ok(["search", "parse the config", "-k", "2", "--json", "-s", src]));
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0]["path"], "src/parser.rs");
    assert_eq!(hits[0]["start_line"], 1);
    assert!(
        hits[0]["content"]
            .as_str()
            .unwrap()
            .contains("parse_config")
    );
    assert!(hits[0]["score"].as_f64().unwrap() >= hits[1]["score"].as_f64().unwrap());
    assert_eq!(
        hits[0]["snippet"],
        "fn parse_config(input: &str) -> Config { todo }"
    );
    assert_eq!(hits[0]["end_line"], 1);

    // Each ranking on its own: the lexical index finds the identifier by its name and
    // the path by its words; the vectors alone rank by similarity.
    for (mode, query, first) in [
        ("lexical", "render_site", "src/render.rs"),
        ("lexical", "parser", "src/parser.rs"),
        ("vector", "parse the config", "src/parser.rs"),
    ] {
        let hits = json_lines(&cli.ok(["search", query, "--mode", mode, "--json", "-s", src]));
        assert_eq!(hits[0]["path"], first, "{mode} `{query}`: {hits:?}");
    }
    let bad = cli.run(["search", "x", "--mode", "fuzzy", "-s", src]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown mode is a usage error"
    );

    // restore: the new run's record.
    let restored = json_lines(&cli.ok(["restore", &first_run.to_string(), "--json", "-s", src]));
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0]["restored_from"], first_run);
    assert_eq!(restored[0]["commit"], first.to_hex());
}

/// The password of a database URL, with `@` and `:` in it, is never printed: not in the
/// errors of any command, not by `--help` when it comes from `PROJSYNC_DB`, not in debug
/// logs.
#[test]
fn a_database_password_with_at_and_colon_is_never_printed() {
    const PASSWORD: &str = "p@ss:w0rd";
    let leaks = |text: &str| -> Option<&'static str> {
        [
            "p@ss:w0rd",
            "p%40ss%3Aw0rd",
            "p%40ss:w0rd",
            "ss:w0rd",
            "w0rd",
            "p@ss",
        ]
        .into_iter()
        .find(|l| text.contains(l))
    };
    let repo = TestRepo::new();
    repo.write("a.txt", "a\n");
    repo.commit("first");
    let src = repo.path().to_str().unwrap();

    // A host that does not resolve: every command that opens the store fails fast.
    let unreachable = format!("postgres://sync:{PASSWORD}@db.invalid:5432/app");
    let cli = Cli::with_db(&unreachable);
    for args in [
        &["run", "-s", src, "--embedder", "none"][..],
        &["ls", "-s", src],
        &["history", "-s", src],
        &["restore", "1", "-s", src],
        &["search", "anything", "-s", src],
    ] {
        let out = cli.command(args).env("RUST_LOG", "debug").output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{args:?}: {all}");
        assert_eq!(leaks(&all), None, "{args:?} printed the password:\n{all}");
        assert!(
            all.contains("postgres://sync:***@db.invalid:5432/app"),
            "{args:?} names the store, redacted:\n{all}"
        );
    }

    // From the environment: neither the errors nor --help show it.
    for args in [&["ls", "-s", src][..], &["--help"], &["run", "--help"]] {
        let out = cli
            .bare_command()
            .args(args)
            .env("PROJSYNC_DB", &unreachable)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(leaks(&all), None, "{args:?} printed the password:\n{all}");
    }

    // A real server refusing the password: exit 5 (unauthorized), still redacted.
    let Some(url) = postgres_url() else { return };
    let server = url::Url::parse(&url).expect("SYNC_TEST_POSTGRES_URL is a URL");
    let wrong = format!(
        "postgres://{}:{PASSWORD}@{}:{}{}",
        server.username(),
        server.host_str().unwrap(),
        server.port().unwrap_or(5432),
        server.path()
    );
    let out = Cli::with_db(wrong).run(["ls", "-s", src]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert_eq!(leaks(&err), None, "{err}");
    assert!(err.contains(":***@"), "{err}");
}
