//! `projsync reembed`: a model's missing embeddings computed from the store alone, once;
//! searches with the new model and the old one.

use sync_git::testkit::TestRepo;

use crate::support::{Cli, json_lines};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A run with `hash:32`, then `reembed --embedder hash:64` computes the distinct texts,
/// a second one nothing; `search` finds the right file with either model, and a model
/// never embedded is a not-found error naming `reembed`.
#[test]
fn reembed_computes_a_new_models_vectors_once_and_search_uses_them() {
    let repo = TestRepo::new();
    repo.write(
        "src/config.rs",
        "fn parse_config(text: &str) -> Config { todo!() }\n",
    )
    .write(
        "src/render.rs",
        "fn render_page(page: &Page) -> Html { todo!() }\n",
    )
    .write(
        "src/network.rs",
        "fn send_request(req: Request) -> Response { todo!() }\n",
    );
    repo.commit("three files");
    let cli = Cli::new();
    let src = repo.path().to_str().unwrap();
    cli.sync_json(src, "main", &["--embedder", "hash:32"]);

    let out = cli.run(["reembed", "--embedder", "hash:64", "-s", src]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        summary.contains("`hash-64`: computed 3 embeddings, reused 0"),
        "{summary}"
    );
    assert!(
        stderr(&out).contains("embedded 3 of 3 texts"),
        "progress on stderr: {}",
        stderr(&out)
    );

    let again = json_lines(&cli.ok(["reembed", "--embedder", "hash:64", "--json", "-s", src]));
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0]["model"], "hash-64");
    assert_eq!(again[0]["computed"], 0, "{}", again[0]);
    assert_eq!(again[0]["reused"], 3, "{}", again[0]);
    assert_eq!(again[0]["entries"], 3, "{}", again[0]);

    for spec in ["hash:64", "hash:32"] {
        let hits = json_lines(&cli.ok([
            "search",
            "parse config",
            "--mode",
            "vector",
            "-k",
            "1",
            "--json",
            "--embedder",
            spec,
            "-s",
            src,
        ]));
        assert_eq!(hits.len(), 1, "{spec}");
        assert_eq!(hits[0]["path"], "src/config.rs", "{spec}: {}", hits[0]);
    }

    // A sync with the new model reuses the vectors.
    let events = cli.sync_json(src, "main", &["--embedder", "hash:64"]);
    let stats = &events.last().unwrap()["record"]["stats"];
    assert_eq!(stats["embeddings_computed"], 0, "{stats}");

    let out = cli.run(["search", "x", "--embedder", "hash:16", "-s", src]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("projsync reembed"),
        "{}",
        stderr(&out)
    );

    let out = cli.run(["reembed", "--embedder", "none", "-s", src]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
