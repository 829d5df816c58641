//! The `projsync` command line over real git histories, with git as the oracle.

use sync_git::testkit::{TestRepo, paths, standard_history};

use crate::support::{Cli, NO_EMBEDDER, json_lines, ls_oracle, ls_oracle_z, point_branch, show};

/// Every commit of the standard history, synced in order (then the other branch, then back),
/// leaves `projsync ls` equal to `git ls-tree -r -l` (quoted as git quotes, and raw with
/// `-z`); restoring an earlier run brings its index
/// back; re-syncing the same commit reads no content.
#[test]
fn ls_matches_git_ls_tree_after_every_commit() {
    let (repo, steps) = standard_history();
    let cli = Cli::new();
    let src = repo.path().to_str().expect("a UTF-8 temp path");

    let mut run_of_step = Vec::new();
    for step in &steps {
        point_branch(&repo, step.branch, &step.commit);
        let events = cli.sync_json(src, step.branch, NO_EMBEDDER);
        let record = &events.last().expect("events")["record"];
        assert_eq!(record["commit"], step.commit.to_hex(), "{}", step.label);
        assert_eq!(record["branch"], step.branch);
        let ls = cli.ls(src);
        let oracle = ls_oracle(repo.path(), &step.commit);
        assert_eq!(
            ls,
            oracle,
            "after `{}`:\nprojsync ls:\n{}\ngit ls-tree:\n{}",
            step.label,
            show(&ls),
            show(&oracle)
        );
        assert_eq!(
            cli.ls_z(src),
            ls_oracle_z(repo.path(), &step.commit),
            "ls -z after `{}`",
            step.label
        );
        if step.label == "empty commit" {
            assert_eq!(
                record["stats"]["blobs_fetched"], 0,
                "an empty commit fetches nothing"
            );
            assert_eq!(record["stats"]["entries_written"], 0);
        }
        run_of_step.push(record["id"].as_i64().expect("a run id"));
    }
    // Back to main: the index follows the branch.
    let main_head = steps.iter().rev().find(|s| s.branch == "main").unwrap();
    cli.sync_json(src, "main", NO_EMBEDDER);
    assert_eq!(cli.ls(src), ls_oracle(repo.path(), &main_head.commit));
    let ls = String::from_utf8(cli.ls(src)).unwrap();
    assert!(ls.contains(&format!("{}\t", paths::SYMLINK)) && ls.contains("\tsymlink\n"));
    assert!(!ls.contains(paths::SUBMODULE), "submodules are not indexed");
    assert!(
        ls.contains(&format!("{}\t", paths::LARGE)),
        "large files stay in the index"
    );
    for plain in [paths::SPACES, paths::DASH] {
        assert!(
            ls.lines().any(|l| l.starts_with(&format!("{plain}\t"))),
            "{plain} is listed as it is"
        );
    }
    // Non-ASCII bytes are quoted in octal, as git does by default; `-z` keeps them raw.
    let quoted = r#""unicode/h\303\251llo w\303\266rld \342\234\223.md""#;
    assert!(
        ls.lines().any(|l| l.starts_with(&format!("{quoted}\t"))),
        "{ls}"
    );
    let raw = cli.ls_z(src);
    assert!(
        raw.split(|&b| b == 0)
            .any(|r| r.starts_with(format!("{}\t", paths::UNICODE).as_bytes())),
        "{}",
        show(&raw)
    );

    // Restore the run of the third commit: its index comes back, as a new run.
    let target = run_of_step[2];
    let out = String::from_utf8(cli.ok(["restore", &target.to_string(), "--source", src])).unwrap();
    assert!(
        out.contains(&format!("restored from run {target}")),
        "{out}"
    );
    assert_eq!(cli.ls(src), ls_oracle(repo.path(), &steps[2].commit));
    let history = cli.history(src);
    assert_eq!(history[0]["restored_from"], target);
    assert_eq!(history.len(), steps.len() + 2);

    // Converge again, then re-sync the same commit: nothing is read.
    cli.sync_json(src, "main", NO_EMBEDDER);
    assert_eq!(cli.ls(src), ls_oracle(repo.path(), &main_head.commit));
    let again = cli.sync_json(src, "main", NO_EMBEDDER);
    let scanned = again.iter().find(|e| e["event"] == "scanned").unwrap();
    assert_eq!(scanned["unchanged_head"], true);
    let stats = &again.last().unwrap()["record"]["stats"];
    assert_eq!(stats["blobs_fetched"], 0);
    assert_eq!(stats["entries_written"], 0);

    // The text history lists every run, newest first.
    let text = String::from_utf8(cli.ok(["history", "-s", src])).unwrap();
    assert_eq!(text.lines().count(), history.len() + 3, "{text}");
    assert!(text.lines().nth(1).unwrap().contains("completed"));
}

/// The JSON stream of `projsync run --json` is honest: Started first, phases in order, one
/// terminal event last, each line a whole event.
#[test]
fn json_events_follow_the_contract() {
    let repo = TestRepo::new();
    repo.write("a.txt", "a\n").write("b.txt", "b\n");
    let commit = repo.commit("first");
    let cli = Cli::new();
    let src = repo.path().to_str().unwrap();
    let events = cli.sync_json(src, "main", NO_EMBEDDER);
    let events: Vec<sync_core::SyncEvent> = events
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("each line is a SyncEvent"))
        .collect();
    sync_core::testkit::check_event_order(&events);
    let Some(sync_core::SyncEvent::Completed { record }) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(record.commit, commit);
    assert_eq!(record.stats.added, 2);
}

/// Failures exit with their kind's status and the typed error's message, and change
/// nothing.
#[test]
fn failures_are_clear_and_change_nothing() {
    let repo = TestRepo::new();
    repo.write("src/lib.rs", "pub fn f() {}\n");
    repo.commit("first");
    let cli = Cli::new();
    let src = repo.path().to_str().unwrap();

    let out = cli.run(["ls", "-s", src]);
    assert_eq!(out.status.code(), Some(3), "no store: not found");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("there is no store") && err.contains("projsync run"),
        "{err}"
    );
    assert!(
        !cli.dir().join("project-sync.db").exists(),
        "reading creates no store"
    );

    let out = cli.run([
        "run",
        "-s",
        src,
        "--branch",
        "no-such-branch",
        "--embedder",
        "none",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("no-such-branch"),
        "{err}"
    );

    let out = cli.run(["run", "-s", src, "--include", "src/[", "--embedder", "none"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an invalid value is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("include glob `src/[`"));

    cli.sync_json(src, "main", NO_EMBEDDER);
    let before = cli.ls(src);
    let out = cli.run(["restore", "424242", "-s", src]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("424242"));
    let out = cli.run(["restore", "not-a-number", "-s", src]);
    assert_eq!(out.status.code(), Some(2));
    let out = cli.run(["search", "anything", "-s", src]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--embedder hash"));
    assert_eq!(cli.ls(src), before, "failed commands changed nothing");

    let out = cli.run([
        "run",
        "--source",
        "/definitely/not/a/repository",
        "--embedder",
        "none",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/definitely/not/a/repository"));

    for usage in [
        &["frobnicate"][..],
        &["restore", "1", "2"],
        &["search"],
        &["ls", "extra"],
        &["ls", "-z", "--json"],
    ] {
        let out = cli.run(usage);
        assert_eq!(out.status.code(), Some(2), "{usage:?}: usage errors exit 2");
    }
}

/// With an embedder configured, `projsync search` finds the closest active entries.
#[test]
fn search_finds_entries_once_embedded() {
    let repo = TestRepo::new();
    repo.write(
        "src/parser.rs",
        "fn parse_config(input: &str) -> Config { todo }\n",
    )
    .write(
        "src/render.rs",
        "fn render_page(page: &Page) -> Html { todo }\n",
    );
    repo.commit("first");
    let cli = Cli::new();
    let src = repo.path().to_str().unwrap();
    cli.sync_json(src, "main", &["--embedder", "hash:64"]);
    let out =
        String::from_utf8(cli.ok(["search", "parse the config", "-k", "1", "-s", src])).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].contains("src/parser.rs:1-1"), "{out}");
}

/// `projsync branches` lists branches with the default marked; `--json` history lines parse.
#[test]
fn branches_and_history_json() {
    let repo = TestRepo::new();
    repo.write("a", "a\n");
    let first = repo.commit("first");
    repo.branch("feature/x");
    repo.checkout("main");
    let cli = Cli::new();
    let src = repo.path().to_str().unwrap();
    let out = String::from_utf8(cli.ok(["branches", "-s", src])).unwrap();
    assert_eq!(
        out,
        format!("  feature/x\t{first}\n* main\t{first}\n"),
        "branches, sorted, default marked"
    );
    cli.sync_json(src, "feature/x", NO_EMBEDDER);
    let history = json_lines(&cli.ok(["--source", src, "history", "--json"]));
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["branch"], "feature/x");
    assert_eq!(history[0]["status"], "completed");
}
