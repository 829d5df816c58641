//! `projsync search --at`, `projsync ls --at` and `projsync changes` on a real git
//! repository of several commits, synced into a SQLite file: a search as of the first run
//! finds a function deleted since and not one added after; `ls --at` lists the first
//! run's index; `changes` names added, modified (with symbols), removed and renamed paths.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sync_git::testkit::TestRepo;

fn projsync(db: &Path, source: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_projsync"));
    cmd.arg("--db")
        .arg(db)
        .arg("--source")
        .arg(source)
        .env_remove("PROJSYNC_SOURCE")
        .env_remove("PROJSYNC_DB")
        .env_remove("PROJSYNC_TENANT")
        .env("RUST_LOG", "warn");
    cmd
}

fn run(db: &Path, source: &Path, args: &[&str]) -> Output {
    projsync(db, source)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("projsync runs")
}

fn ok(db: &Path, source: &Path, args: &[&str]) -> String {
    let out = run(db, source, args);
    assert!(
        out.status.success(),
        "projsync {args:?} failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// A Rust function of about 200 tokens (it stands alone as one chunk of the syntax
/// chunker), whose body depends on `salt`.
fn function(name: &str, salt: u32) -> String {
    let mut body = format!("pub fn {name}(data: &[u8]) -> u64 {{\n    let mut total = 0u64;\n");
    for i in 0..14 {
        body.push_str(&format!(
            "    total += data.len() as u64 * {} + {i};\n",
            salt * 100 + i
        ));
    }
    body.push_str("    total\n}\n");
    body
}

/// The completed runs' ids, oldest first.
fn runs(db: &Path, source: &Path) -> Vec<i64> {
    let mut ids: Vec<i64> = json_lines(&ok(db, source, &["history", "--json"]))
        .iter()
        .filter(|r| r["status"] == "completed")
        .map(|r| r["id"].as_i64().expect("a run id"))
        .collect();
    ids.reverse();
    ids
}

#[test]
fn search_ls_and_changes_read_earlier_runs() {
    let repo = TestRepo::new();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("memory.db");
    let src = repo.path();
    let sync = || ok(&db, src, &["run", "--embedder", "hash:64", "--json"]);

    repo.write(
        "src/lib.rs",
        format!(
            "{}\n{}",
            function("parse_header", 1),
            function("legacy_checksum", 2)
        ),
    )
    .write("src/old.rs", function("moved_helper", 3))
    .write("README.md", "# demo\n\nA demo project.\n");
    repo.commit("first");
    sync();
    repo.write(
        "src/lib.rs",
        format!(
            "{}\n{}",
            function("parse_header", 4),
            function("fresh_digest", 5)
        ),
    )
    .write("src/new.rs", function("brand_new", 6))
    .remove("README.md")
    .rename("src/old.rs", "src/moved.rs");
    repo.commit("second");
    sync();
    let ids = runs(&db, src);
    assert_eq!(ids.len(), 2, "{ids:?}");
    let (first, second) = (ids[0].to_string(), ids[1].to_string());

    // Search as of the first run: the deleted function, not the added one.
    for mode in ["lexical", "hybrid"] {
        let search = |query: &str, at: Option<&str>| {
            let mut args = vec!["search", query, "--mode", mode, "--json", "-k", "20"];
            if let Some(at) = at {
                args.extend(["--at", at]);
            }
            json_lines(&ok(&db, src, &args))
        };
        let has = |hits: &[Value], name: &str| {
            hits.iter()
                .any(|h| h["content"].as_str().unwrap().contains(name))
        };
        let then = search("legacy_checksum fresh_digest", Some(&first));
        assert!(
            has(&then, "legacy_checksum"),
            "{mode} at run {first}: {then:?}"
        );
        assert!(
            !has(&then, "fresh_digest"),
            "{mode} at run {first}: {then:?}"
        );
        let now = search("legacy_checksum fresh_digest", None);
        assert!(has(&now, "fresh_digest"), "{mode} now: {now:?}");
        assert!(!has(&now, "legacy_checksum"), "{mode} now: {now:?}");
        assert_eq!(
            search("fresh_digest", Some(&second)),
            search("fresh_digest", None)
        );
    }

    // The index as of each run.
    let names = |out: String| -> Vec<String> {
        out.lines()
            .map(|l| l.split('\t').next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(ok(&db, src, &["ls", "--at", &first])),
        ["README.md", "src/lib.rs", "src/old.rs"]
    );
    assert_eq!(
        names(ok(&db, src, &["ls"])),
        ["src/lib.rs", "src/moved.rs", "src/new.rs"]
    );
    assert_eq!(
        ok(&db, src, &["ls", "--at", &second]),
        ok(&db, src, &["ls"])
    );

    // What changed, as JSON and as lines.
    let changes: Value = serde_json::from_str(&ok(&db, src, &["changes", "--json"])).unwrap();
    assert_eq!(changes["from"], ids[0]);
    assert_eq!(changes["to"], ids[1]);
    assert_eq!(changes["added"], serde_json::json!(["src/new.rs"]));
    assert_eq!(changes["removed"], serde_json::json!(["README.md"]));
    assert_eq!(
        changes["renamed"],
        serde_json::json!([{"from": "src/old.rs", "to": "src/moved.rs"}])
    );
    let modified = &changes["modified"][0];
    assert_eq!(modified["path"], "src/lib.rs");
    let symbols = |key: &str| modified[key].to_string();
    assert!(
        symbols("symbols_added").contains("fresh_digest"),
        "{modified}"
    );
    assert!(
        symbols("symbols_removed").contains("legacy_checksum"),
        "{modified}"
    );
    assert!(
        symbols("symbols_changed").contains("parse_header"),
        "{modified}"
    );
    assert_eq!(
        ok(&db, src, &["changes", &first, &second, "--json"]),
        ok(&db, src, &["changes", "--json"]),
        "the defaults are the last two completed runs"
    );
    let lines = ok(&db, src, &["changes", &first, &second]);
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0], "D\tREADME.md");
    assert!(lines[1].starts_with("M\tsrc/lib.rs\t"), "{lines:?}");
    assert!(lines[1].contains("+fn fresh_digest"), "{lines:?}");
    assert!(lines[1].contains("-fn legacy_checksum"), "{lines:?}");
    assert!(lines[1].contains("~fn parse_header"), "{lines:?}");
    assert_eq!(lines[2], "R\tsrc/old.rs\tsrc/moved.rs");
    assert_eq!(lines[3], "A\tsrc/new.rs");
    let none = ok(&db, src, &["changes", &second, &second]);
    assert!(none.is_empty(), "{none}");

    // Runs that cannot be read.
    let missing = run(&db, src, &["ls", "--at", "999999"]);
    assert_eq!(
        missing.status.code(),
        Some(3),
        "an unknown run is not found"
    );
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("run 999999"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let bad = run(&db, src, &["search", "x", "--at", "latest"]);
    assert_eq!(bad.status.code(), Some(2), "a run id is a number");
}
