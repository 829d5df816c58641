//! The same git history into SQLite and into Postgres: identical `projsync ls` after every
//! commit, and the same answers to history, restore and search.

use sync_git::testkit::standard_history;

use crate::support::{Cli, ls_oracle, point_branch, postgres_url, show, unique_tenant};

#[test]
fn sqlite_and_postgres_list_the_same_index_after_every_commit() {
    let Some(url) = postgres_url() else { return };
    let (repo, steps) = standard_history();
    let sqlite = Cli::new();
    let postgres = Cli::with_db(url).with_tenant(unique_tenant("e2e-stores"));
    let src = repo.path().to_str().unwrap();
    let embed = ["--embedder", "hash:48"];

    for step in &steps {
        point_branch(&repo, step.branch, &step.commit);
        sqlite.sync_json(src, step.branch, &embed);
        postgres.sync_json(src, step.branch, &embed);
        let (a, b) = (sqlite.ls(src), postgres.ls(src));
        assert_eq!(
            a,
            b,
            "after `{}`:\nsqlite:\n{}\npostgres:\n{}",
            step.label,
            show(&a),
            show(&b)
        );
        assert_eq!(
            b,
            ls_oracle(repo.path(), &step.commit),
            "after `{}`",
            step.label
        );
    }

    // Both stores numbered their runs in their own way; restore by position in history.
    let nth_run = |cli: &Cli, n: usize| {
        let history = cli.history(src);
        history[history.len() - 1 - n]["id"]
            .as_i64()
            .unwrap()
            .to_string()
    };
    sqlite.ok(["restore", &nth_run(&sqlite, 3), "-s", src]);
    postgres.ok(["restore", &nth_run(&postgres, 3), "-s", src]);
    assert_eq!(sqlite.ls(src), postgres.ls(src));
    assert_eq!(postgres.ls(src), ls_oracle(repo.path(), &steps[3].commit));

    let statuses = |cli: &Cli| -> Vec<String> {
        cli.history(src)
            .iter()
            .map(|r| format!("{} {} {}", r["status"], r["branch"], r["commit"]))
            .collect()
    };
    assert_eq!(statuses(&sqlite), statuses(&postgres), "the same history");

    let query = ["search", "pub fn f07", "-k", "3", "-s", src];
    let (a, b) = (sqlite.ok(query), postgres.ok(query));
    assert_eq!(show(&a), show(&b), "the same search results");
    assert_eq!(show(&b).lines().count(), 3);
}
