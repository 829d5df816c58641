//! The web page of `projsync serve` in headless Chromium, as a user drives it: the token
//! field, a branch, Sync Now and the live banner, a second sync, restoring an earlier run
//! from the history, search, and a phone-width screen.
//!
//! With `PROJSYNC_SCREENSHOTS=DIR`, the test also saves `web-synced.png` (the page after a
//! sync) and `web-375.png` (at phone width) into `DIR`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use sync_git::testkit::TestRepo;

use crate::support::{Cli, Server};
use crate::webdriver::{Browser, ENTER, chromium};

/// What the page shows, as one JSON object.
const SNAPSHOT: &str = r#"
const t = (id) => document.querySelector(`[data-testid="${id}"]`);
const all = (id) => [...document.querySelectorAll(`[data-testid="${id}"]`)];
const progress = t('progress');
return {
  phases: ['prepare', 'scan', 'import', 'finalize'].map((p) => t('phase-' + p).dataset.state),
  progressTag: progress.tagName,
  value: progress.value,
  max: progress.max,
  run: t('banner').dataset.run,
  status: t('banner').dataset.status,
  error: t('error').hidden ? null : t('error').textContent,
  tokenField: !t('token-form').hidden,
  branches: [...t('branch-select').options].map((o) => o.value),
  rows: all('history-row').map((r) => ({
    id: Number(r.dataset.id),
    status: r.dataset.status,
    restoredFrom: r.dataset.restoredFrom ? Number(r.dataset.restoredFrom) : null,
    restore: r.querySelector('[data-testid="restore"]') !== null,
  })),
  results: all('search-result').map((r) => r.textContent),
  searched: document.getElementById('search-status').textContent,
  stats: Object.fromEntries([...t('stats').querySelectorAll('[data-stat]')].map((d) => [d.dataset.stat, d.textContent])),
  focused: document.activeElement ? document.activeElement.dataset.testid || null : null,
  innerWidth: window.innerWidth,
  scrollWidth: document.documentElement.scrollWidth,
};
"#;

/// How long the page may take to show an outcome.
const PATIENCE: Duration = Duration::from_secs(20);

const TOKEN: &str = "browser-secret-7";

/// Whether the banner shows run `run` completed: every phase done, the progress bar full.
fn completed(s: &Value, run: &str) -> bool {
    s["run"] == run
        && s["status"] == "completed"
        && s["phases"]
            .as_array()
            .is_some_and(|p| p.iter().all(|state| state == "done"))
        && s["max"].as_f64().is_some_and(|max| max > 0.0)
        && s["value"] == s["max"]
}

fn rows(s: &Value) -> &Vec<Value> {
    s["rows"].as_array().expect("rows")
}

fn results_name(s: &Value, path: &str) -> bool {
    s["results"].as_array().is_some_and(|r| {
        r.iter()
            .any(|text| text.as_str().is_some_and(|t| t.contains(path)))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_syncs_restores_and_searches_in_headless_chromium() {
    let Some((chromium, chromedriver)) = chromium() else {
        return;
    };
    let began = Instant::now();
    let shots = std::env::var_os("PROJSYNC_SCREENSHOTS").map(PathBuf::from);

    // `release` holds the first commit; `main` moves on without it.
    let repo = TestRepo::new();
    repo.write("README.md", "# The browser test\n");
    repo.write("src/lib.rs", "pub fn library_entry() -> u32 { 1 }\n");
    repo.write(
        "src/alpha.rs",
        "pub fn first_commit_marker() -> u32 { 7 }\n",
    );
    repo.commit("first");
    repo.git(["branch", "release"]);
    repo.write("docs/main-only.md", "Only on main.\n");
    repo.commit("main moves on");

    let cli = Cli::new().with_tenant("acme");
    let src = repo.path().to_str().unwrap();
    let server = Server::start(
        &cli,
        &["--source", src, "--embedder", "hash:32"],
        &[("PROJSYNC_TOKENS", &format!("acme:{TOKEN}"))],
    );
    let browser = Browser::start(&chromium, &chromedriver, (1200, 1000)).await;
    browser.goto(&server.url("/")).await;

    // The API wants a token: the page asks for one, with the server's message.
    let s = browser
        .wait_for("the token field", SNAPSHOT, PATIENCE, |s| {
            s["tokenField"] == true && s["error"].is_string()
        })
        .await;
    assert_eq!(
        s["error"],
        "this API needs a token: send `Authorization: Bearer TOKEN`"
    );
    assert_eq!(s["progressTag"], "PROGRESS");
    let token = browser.find("[data-testid=token-input]").await;
    browser
        .type_into(&token, &format!("not-the-token{ENTER}"))
        .await;
    browser
        .wait_for("the wrong token's error", SNAPSHOT, PATIENCE, |s| {
            s["error"] == "the token is not valid; check the token you sent"
        })
        .await;
    browser.clear(&token).await;
    browser.type_into(&token, &format!("{TOKEN}{ENTER}")).await;
    let s = browser
        .wait_for("the branches", SNAPSHOT, PATIENCE, |s| {
            s["branches"].as_array().is_some_and(|b| b.len() == 2)
        })
        .await;
    assert_eq!(s["branches"], serde_json::json!(["main", "release"]));
    assert_eq!(s["tokenField"], false);
    assert_eq!(s["error"], Value::Null);
    assert!(rows(&s).is_empty(), "{s}");

    // Pick `release` and sync it: the banner goes through every phase to a full bar.
    browser
        .click(
            &browser
                .find("[data-testid=branch-select] option[value=release]")
                .await,
        )
        .await;
    browser
        .click(&browser.find("[data-testid=sync-now]").await)
        .await;
    let s = browser
        .wait_for("the first run, completed", SNAPSHOT, PATIENCE, |s| {
            rows(s).len() == 1 && rows(s)[0]["status"] == "completed"
        })
        .await;
    let first = rows(&s)[0]["id"].as_i64().unwrap();
    let s = browser
        .wait_for("the banner of the first run", SNAPSHOT, PATIENCE, |s| {
            completed(s, &first.to_string())
        })
        .await;
    assert_eq!(s["stats"]["files"], "3 / 3", "{s}");
    assert_eq!(s["stats"]["added"], "3", "{s}");
    assert_eq!(s["stats"]["removed"], "0", "{s}");
    assert_ne!(s["stats"]["embedded"], "0", "{s}");
    assert_eq!(s["max"], 3.0, "{s}");
    if let Some(dir) = &shots {
        browser.screenshot(&dir.join("web-synced.png")).await;
    }

    // A new commit on `release`: `src/alpha.rs` goes, `src/beta.rs` comes. Sync Now by
    // keyboard: the button takes Enter.
    repo.checkout("release");
    repo.remove("src/alpha.rs");
    repo.write("src/beta.rs", "pub fn second_commit() -> u32 { 8 }\n");
    repo.commit("second");
    browser
        .type_into(&browser.find("[data-testid=sync-now]").await, ENTER)
        .await;
    let s = browser
        .wait_for("the second run, completed", SNAPSHOT, PATIENCE, |s| {
            rows(s).len() == 2 && rows(s)[0]["status"] == "completed"
        })
        .await;
    let second = rows(&s)[0]["id"].as_i64().unwrap();
    assert!(second > first);
    let s = browser
        .wait_for("the banner of the second run", SNAPSHOT, PATIENCE, |s| {
            completed(s, &second.to_string())
        })
        .await;
    assert_eq!(s["stats"]["added"], "1", "{s}");
    assert_eq!(s["stats"]["removed"], "1", "{s}");
    assert_eq!(s["stats"]["files"], "1 / 1", "{s}");
    assert_eq!(s["focused"], "sync-now", "{s}");

    // The removed file is not found any more.
    let search = browser.find("[data-testid=search-input]").await;
    browser
        .type_into(&search, &format!("first_commit_marker{ENTER}"))
        .await;
    let s = browser
        .wait_for("search results", SNAPSHOT, PATIENCE, |s| {
            s["searched"].as_str().is_some_and(|t| !t.is_empty())
        })
        .await;
    assert!(!results_name(&s, "src/alpha.rs"), "{s}");

    // Restore the first run from the history: a third run, a restore of the first.
    browser
        .click(
            &browser
                .find(&format!(
                    "[data-testid=history-row][data-id=\"{first}\"] [data-testid=restore]"
                ))
                .await,
        )
        .await;
    let s = browser
        .wait_for("the restore in the history", SNAPSHOT, PATIENCE, |s| {
            rows(s).len() == 3
        })
        .await;
    assert_eq!(rows(&s)[0]["status"], "completed", "{s}");
    assert_eq!(rows(&s)[0]["restoredFrom"], first, "{s}");
    assert!(rows(&s).iter().all(|r| r["restore"] == true), "{s}");

    // The restored state has the file again, and search finds it.
    browser.type_into(&search, ENTER).await;
    let s = browser
        .wait_for(
            "the restored file in the results",
            SNAPSHOT,
            PATIENCE,
            |s| results_name(s, "src/alpha.rs"),
        )
        .await;
    let hit = s["results"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|r| r.as_str().filter(|t| t.contains("src/alpha.rs")))
        .unwrap();
    assert!(hit.contains("line 1"), "{hit}");
    assert!(hit.contains("first_commit_marker"), "{hit}");
    assert_eq!(s["error"], Value::Null);

    // A phone's screen: nothing wider than it.
    browser.emulate_phone(375, 812).await;
    let s = browser
        .wait_for("a 375 px viewport", SNAPSHOT, PATIENCE, |s| {
            s["innerWidth"] == 375
        })
        .await;
    assert!(
        s["scrollWidth"].as_i64().unwrap() <= 375,
        "the page is wider than the phone: {s}"
    );
    if let Some(dir) = &shots {
        browser.screenshot(&dir.join("web-375.png")).await;
    }

    browser.close().await;
    let stderr = server.stop();
    assert!(!stderr.contains(TOKEN), "{stderr}");
    eprintln!("the browser test took {:.1?}", began.elapsed());
}
