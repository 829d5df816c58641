//! The web page: served without a token, with its content types and a strict
//! Content-Security-Policy, its `<base>` at the router's mount point.

use crate::support::{ACME, Served};

/// `GET url` without a token: status, content type, CSP and body.
async fn fetch(s: &Served, url: &str) -> (u16, String, String, String) {
    let r = s.http.get(url).send().await.unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (content_type, csp) = (header("content-type"), header("content-security-policy"));
    assert_eq!(header("x-content-type-options"), "nosniff", "{url}");
    (
        r.status().as_u16(),
        content_type,
        csp,
        r.text().await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_need_no_token_while_the_api_does() {
    let s = Served::start().await;
    let cases = [
        ("/", "text/html; charset=utf-8", "data-testid=\"sync-now\""),
        (
            "/assets/app.js",
            "text/javascript; charset=utf-8",
            "text/event-stream",
        ),
        ("/assets/app.css", "text/css; charset=utf-8", "@media"),
    ];
    for (path, content_type, needle) in cases {
        let (status, ty, csp, body) = fetch(&s, &s.url(path)).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(ty, content_type, "{path}");
        assert!(body.contains(needle), "{path} lacks {needle}");
        for rule in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(rule), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
    }
    let (_, _, _, page) = fetch(&s, &s.url("/")).await;
    assert!(page.contains("<base href=\"/\">"), "{page}");
    assert!(
        page.contains("<script src=\"assets/app.js\" defer></script>"),
        "{page}"
    );

    // The API still needs the token; with it, it answers.
    let r = s.http.get(s.url("/api/v1/projects")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (status, _) = s.get(ACME, "/api/v1/projects").await;
    assert_eq!(status, 200);
    // An unknown asset is a 404 like any unknown route.
    let r = s.http.get(s.url("/assets/nope.js")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_under_a_prefix_the_page_points_at_its_own_assets_and_api() {
    let s = Served::start().await;
    let app = axum::Router::new().nest("/sync", sync_server::router(s.state.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (status, ty, _, page) = fetch(&s, &format!("{base}/sync")).await;
    assert_eq!((status, ty.as_str()), (200, "text/html; charset=utf-8"));
    assert!(page.contains("<base href=\"/sync/\">"), "{page}");
    let (status, ty, _, _) = fetch(&s, &format!("{base}/sync/assets/app.js")).await;
    assert_eq!(
        (status, ty.as_str()),
        (200, "text/javascript; charset=utf-8")
    );
}
