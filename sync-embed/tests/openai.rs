//! The OpenAI-compatible embedder against a local server that speaks the API and
//! misbehaves on purpose, one scripted answer per request.
#![cfg(feature = "openai")]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use sync_core::{Embedder, Error, ErrorKind};
use sync_embed::{OpenAiEmbedder, OpenAiEmbedderBuilder, Overflow, RetryPolicy, TokenUsage};

const DIMS: usize = 4;
const KEY: &str = "sk-test-0123456789-secret";

/// One scripted answer; when the script is empty the server answers correctly.
#[derive(Debug, Clone)]
enum Answer {
    /// 429 with these headers.
    RateLimited(Vec<(&'static str, &'static str)>),
    /// This status with an OpenAI-style error body.
    Status(u16),
    /// 401 whose message echoes the Authorization header it got.
    EchoKey,
    /// Vectors of the wrong length.
    WrongDimension,
    /// A body that is not JSON.
    Malformed,
    /// The connection dies in the middle of the body.
    Drop,
    /// A correct answer after this long.
    Slow(Duration),
}

#[derive(Default)]
struct Server {
    script: Mutex<VecDeque<Answer>>,
    /// The inputs of every request, in arrival order.
    requests: Mutex<Vec<Vec<String>>>,
    /// The `dimensions` field of every request.
    dimensions: Mutex<Vec<Option<u64>>>,
    /// Authorization headers seen.
    auth: Mutex<Vec<Option<String>>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Every request waits this long (to measure concurrency).
    delay: Mutex<Duration>,
}

/// The vector the server gives a text: its length in bytes, then a fixed pattern.
fn vector_of(text: &str) -> Vec<f32> {
    let mut v = vec![text.len() as f32, 1.0, 2.0, 3.0];
    v.truncate(DIMS);
    v
}

fn correct(inputs: &[String]) -> Value {
    // Out of order on purpose: the last input first.
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector_of(t)}))
        .collect();
    let tokens = inputs.len() * 10;
    json!({"object": "list", "data": data, "model": "m", "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
}

async fn embeddings(State(s): State<Arc<Server>>, headers: HeaderMap, body: String) -> Response {
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let response = answer(&s, &headers, &body).await;
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

async fn answer(s: &Server, headers: &HeaderMap, body: &str) -> Response {
    let request: Value = serde_json::from_str(body).expect("the client sends JSON");
    let inputs: Vec<String> = request["input"]
        .as_array()
        .expect("input is an array")
        .iter()
        .map(|v| v.as_str().expect("inputs are strings").to_string())
        .collect();
    s.requests.lock().unwrap().push(inputs.clone());
    s.dimensions
        .lock()
        .unwrap()
        .push(request["dimensions"].as_u64());
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string());
    s.auth.lock().unwrap().push(auth.clone());
    let delay = *s.delay.lock().unwrap();
    tokio::time::sleep(delay).await;

    let next = s.script.lock().unwrap().pop_front();
    let error = |status: u16, message: String| {
        (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            json!({"error": {"message": message, "type": "test"}}).to_string(),
        )
            .into_response()
    };
    match next {
        None => axum::Json(correct(&inputs)).into_response(),
        Some(Answer::Slow(d)) => {
            tokio::time::sleep(d).await;
            axum::Json(correct(&inputs)).into_response()
        }
        Some(Answer::RateLimited(extra)) => {
            let mut r = error(429, "Rate limit reached".into());
            for (k, v) in extra {
                r.headers_mut().insert(k, v.parse().unwrap());
            }
            r
        }
        Some(Answer::Status(code)) => error(code, format!("scripted {code}")),
        Some(Answer::EchoKey) => error(
            401,
            format!("Incorrect API key provided: {}", auth.unwrap_or_default()),
        ),
        Some(Answer::WrongDimension) => {
            let data: Vec<Value> = (0..inputs.len())
                .map(|i| json!({"index": i, "embedding": vec![0.5f32; DIMS + 1]}))
                .collect();
            axum::Json(json!({"data": data})).into_response()
        }
        Some(Answer::Malformed) => {
            (StatusCode::OK, "{\"data\": [ {\"index\": 0, \"emb").into_response()
        }
        Some(Answer::Drop) => {
            let chunks = futures::stream::iter(vec![
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"data\": [")),
                Err(std::io::Error::other("connection dropped on purpose")),
            ]);
            Response::new(Body::from_stream(chunks))
        }
    }
}

struct Fake {
    state: Arc<Server>,
    addr: SocketAddr,
}

impl Fake {
    async fn start(script: Vec<Answer>) -> Self {
        let state = Arc::new(Server::default());
        state.script.lock().unwrap().extend(script);
        let app = Router::new()
            .route("/v1/embeddings", post(embeddings))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { state, addr }
    }

    fn builder(&self) -> OpenAiEmbedderBuilder {
        OpenAiEmbedder::builder(format!("http://{}/v1", self.addr), "test-model")
            .native_dimensions(DIMS)
            .api_key(KEY)
            .timeout(Duration::from_secs(5))
            .retry(RetryPolicy {
                max_retries: 3,
                min_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(50),
                max_rate_limit_wait: Duration::from_secs(5),
            })
    }

    fn requests(&self) -> Vec<Vec<String>> {
        self.state.requests.lock().unwrap().clone()
    }
}

fn assert_no_key(text: &str) {
    assert!(!text.contains(KEY), "the key leaked: {text}");
    assert!(
        !text.contains("0123456789-secret"),
        "part of the key leaked: {text}"
    );
}

fn assert_no_key_in_error(e: &Error) {
    assert_no_key(&e.to_string());
    assert_no_key(&format!("{e:?}"));
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        assert_no_key(&s.to_string());
        source = s.source();
    }
}

#[tokio::test]
async fn vectors_follow_the_index_not_the_arrival_and_usage_is_counted() {
    let fake = Fake::start(vec![]).await;
    let e = fake.builder().build().unwrap();
    assert_eq!((e.model(), e.dimensions()), ("test-model", DIMS));
    let texts = ["a", "bbb", "cc", "dddddd"];
    let v = e.embed(&texts).await.unwrap();
    for (t, got) in texts.iter().zip(&v) {
        assert_eq!(got.as_slice(), vector_of(t).as_slice(), "vector of {t}");
    }
    assert_eq!(
        e.usage(),
        TokenUsage {
            requests: 1,
            inputs: 4,
            prompt_tokens: 40,
            total_tokens: 40
        }
    );
    assert_eq!(
        fake.state.auth.lock().unwrap()[0].as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    // No `dimensions` is sent unless asked for.
    assert_eq!(fake.state.dimensions.lock().unwrap()[0], None);
    assert!(e.embed(&[]).await.unwrap().is_empty());
    assert_eq!(fake.requests().len(), 1, "an empty call sends nothing");
}

#[tokio::test]
async fn dimensions_are_sent_when_asked_for_and_required_when_unknown() {
    let fake = Fake::start(vec![]).await;
    let e = OpenAiEmbedder::builder(format!("http://{}/v1", fake.addr), "m")
        .dimensions(DIMS)
        .build()
        .unwrap();
    e.embed(&["x"]).await.unwrap();
    assert_eq!(fake.state.dimensions.lock().unwrap()[0], Some(DIMS as u64));
    assert_eq!(
        e.model(),
        format!("m@{DIMS}"),
        "shortened vectors are stored under their own name"
    );

    let err = OpenAiEmbedder::builder("http://127.0.0.1:9/v1", "unknown-model")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let known = OpenAiEmbedder::builder("http://127.0.0.1:9/v1", "text-embedding-3-small")
        .build()
        .unwrap();
    assert_eq!(known.dimensions(), 1536);
    let err = OpenAiEmbedder::builder("ftp://127.0.0.1/v1", "m")
        .native_dimensions(3)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn rate_limit_waits_as_retry_after_says_then_succeeds() {
    let fake = Fake::start(vec![Answer::RateLimited(vec![("retry-after", "1")])]).await;
    let e = fake.builder().build().unwrap();
    let start = Instant::now();
    let v = e.embed(&["hello"]).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        start.elapsed()
    );
    assert_eq!(v[0].as_slice(), vector_of("hello").as_slice());
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn rate_limit_headers_of_openai_are_honoured() {
    let fake = Fake::start(vec![Answer::RateLimited(vec![
        ("x-ratelimit-reset-requests", "300ms"),
        ("x-ratelimit-reset-tokens", "600ms"),
    ])])
    .await;
    let e = fake.builder().build().unwrap();
    let start = Instant::now();
    e.embed(&["hello"]).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "waited {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn rate_limit_past_the_retries_is_rate_limited_with_a_reset() {
    let limited = || Answer::RateLimited(vec![("retry-after-ms", "20")]);
    let fake = Fake::start(vec![limited(), limited(), limited(), limited(), limited()]).await;
    let e = fake.builder().build().unwrap();
    let err = e.embed(&["hello"]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited, "{err}");
    let Error::RateLimited { reset, .. } = &err else {
        unreachable!()
    };
    assert!(reset.is_some());
    assert_eq!(
        fake.requests().len(),
        4,
        "the first attempt and three retries"
    );
    assert!(err.is_retryable());

    // A wait longer than allowed fails at once.
    let fake = Fake::start(vec![Answer::RateLimited(vec![("retry-after", "3600")])]).await;
    let e = fake.builder().build().unwrap();
    let start = Instant::now();
    let err = e.embed(&["hello"]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert!(start.elapsed() < Duration::from_secs(2));
    let Error::RateLimited {
        reset: Some(reset), ..
    } = err
    else {
        panic!("no reset")
    };
    assert!(reset > chrono::Utc::now() + chrono::Duration::minutes(59));
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn server_errors_timeouts_and_dropped_connections_are_retried() {
    let fake = Fake::start(vec![Answer::Status(500), Answer::Drop, Answer::Status(503)]).await;
    let e = fake.builder().build().unwrap();
    let v = e.embed(&["hello"]).await.unwrap();
    assert_eq!(v[0].as_slice(), vector_of("hello").as_slice());
    assert_eq!(fake.requests().len(), 4);

    let fake = Fake::start(vec![Answer::Slow(Duration::from_secs(3))]).await;
    let e = fake
        .builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    e.embed(&["hello"]).await.unwrap();
    assert_eq!(
        fake.requests().len(),
        2,
        "the timed-out request was tried again"
    );

    let fake = Fake::start(vec![Answer::Status(502); 4]).await;
    let e = fake.builder().build().unwrap();
    let err = e.embed(&["hello"]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend);
    assert!(err.is_retryable());
    assert!(err.to_string().contains("502"), "{err}");
}

#[tokio::test]
async fn wrong_dimension_and_malformed_json_are_corrupt_and_not_retried() {
    let fake = Fake::start(vec![Answer::WrongDimension]).await;
    let e = fake.builder().build().unwrap();
    let err = e.embed(&["hello", "world"]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.to_string().contains("5 dimensions"), "{err}");
    assert_eq!(fake.requests().len(), 1);

    let fake = Fake::start(vec![Answer::Malformed]).await;
    let e = fake.builder().build().unwrap();
    let err = e.embed(&["hello"]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.to_string().contains("malformed JSON"), "{err}");
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn unauthorized_never_shows_the_key() {
    let fake = Fake::start(vec![Answer::EchoKey]).await;
    let e = fake.builder().build().unwrap();
    assert_no_key(&format!("{e:?}"));
    assert_no_key(&format!("{:?}", fake.builder()));
    let err = e.embed(&["hello"]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(err.to_string().contains("401"), "{err}");
    assert_no_key_in_error(&err);
    assert_eq!(fake.requests().len(), 1, "401 is not retried");

    // Other refusals map to their kinds too.
    for (status, kind) in [
        (403, ErrorKind::Unauthorized),
        (404, ErrorKind::NotFound),
        (400, ErrorKind::InvalidInput),
    ] {
        let fake = Fake::start(vec![Answer::Status(status)]).await;
        let err = fake
            .builder()
            .build()
            .unwrap()
            .embed(&["x"])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{status}: {err}");
        assert_no_key_in_error(&err);
    }

    // A named key variable that is unset fails at build, naming the variable.
    let err = fake_builder_without_key()
        .api_key_env("SYNC_EMBED_TEST_KEY_THAT_IS_NOT_SET")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(
        err.to_string()
            .contains("SYNC_EMBED_TEST_KEY_THAT_IS_NOT_SET")
    );
}

fn fake_builder_without_key() -> OpenAiEmbedderBuilder {
    OpenAiEmbedder::builder("http://127.0.0.1:9/v1", "m").native_dimensions(DIMS)
}

#[tokio::test]
async fn requests_in_flight_stay_within_the_concurrency_bound() {
    let fake = Fake::start(vec![]).await;
    *fake.state.delay.lock().unwrap() = Duration::from_millis(100);
    let e = fake
        .builder()
        .max_batch_inputs(1)
        .concurrency(3)
        .build()
        .unwrap();
    let texts: Vec<String> = (0..12).map(|i| format!("text {i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // Two calls at once share the bound.
    let (a, b) = tokio::join!(e.embed(&refs[..6]), e.embed(&refs[6..]));
    let all: Vec<_> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    for (t, v) in refs.iter().zip(&all) {
        assert_eq!(v.as_slice(), vector_of(t).as_slice());
    }
    assert_eq!(fake.requests().len(), 12);
    assert_eq!(fake.state.max_in_flight.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn requests_are_bounded_by_inputs_and_by_tokens() {
    let fake = Fake::start(vec![]).await;
    let words = |t: &str| t.split_whitespace().count();
    let e = fake
        .builder()
        .token_counter(words)
        .max_batch_tokens(10)
        .max_batch_inputs(3)
        .build()
        .unwrap();
    let texts = [
        "one two three four",
        "five six seven",
        "eight",
        "nine ten",
        "a b c d e f g h i",
        "z",
    ];
    let v = e.embed(&texts).await.unwrap();
    for (t, got) in texts.iter().zip(&v) {
        assert_eq!(got.as_slice(), vector_of(t).as_slice());
    }
    let sizes: Vec<Vec<usize>> = fake
        .requests()
        .iter()
        .map(|r| r.iter().map(|t| words(t)).collect())
        .collect();
    // 4+3+1 = 8 (three inputs, the most); 2+9 > 10; then 9+1.
    assert_eq!(sizes, vec![vec![4, 3, 1], vec![2], vec![9, 1]]);
}

#[tokio::test]
async fn over_long_inputs_are_truncated_or_split() {
    let words = |t: &str| t.split_whitespace().count();
    let long = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10";

    let fake = Fake::start(vec![]).await;
    let e = fake
        .builder()
        .token_counter(words)
        .max_input_tokens(4)
        .build()
        .unwrap();
    let v = e.embed(&["short", long]).await.unwrap();
    let sent = fake.requests().concat();
    assert_eq!(sent[0], "short");
    assert_eq!(words(&sent[1]), 4, "truncated to the limit: {:?}", sent[1]);
    assert!(long.starts_with(sent[1].trim_end()));
    assert_eq!(v[1].as_slice(), vector_of(&sent[1]).as_slice());

    let fake = Fake::start(vec![]).await;
    let e = fake
        .builder()
        .token_counter(words)
        .max_input_tokens(4)
        .overflow(Overflow::Split)
        .build()
        .unwrap();
    let v = e.embed(&["short", long]).await.unwrap();
    let sent = fake.requests().concat();
    assert_eq!(sent[0], "short");
    let pieces = &sent[1..];
    assert!(pieces.iter().all(|p| words(p) <= 4), "{pieces:?}");
    assert_eq!(pieces.concat(), long, "the pieces cover the input exactly");
    assert_eq!(pieces.len(), 3);
    // The mean of the pieces' vectors weighted by tokens, L2-normalised.
    let mut mean = vec![0.0f32; DIMS];
    let total: usize = pieces.iter().map(|p| words(p)).sum();
    for p in pieces {
        for (m, x) in mean.iter_mut().zip(vector_of(p)) {
            *m += x * words(p) as f32 / total as f32;
        }
    }
    let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt();
    mean.iter_mut().for_each(|x| *x /= norm);
    for (a, b) in v[1].as_slice().iter().zip(&mean) {
        assert!((a - b).abs() < 1e-6, "{:?} vs {mean:?}", v[1]);
    }
    assert_eq!(e.usage().inputs, 4);
}

/// A call reports the `usage.total_tokens` of all its requests, summed: requests split by
/// size and the pieces of a split input all count, and concurrent calls each get their own.
#[tokio::test]
async fn each_call_reports_the_tokens_of_its_own_requests() {
    let fake = Fake::start(vec![]).await;
    let words = |t: &str| t.split_whitespace().count();
    let e = Arc::new(
        fake.builder()
            .token_counter(words)
            .max_input_tokens(4)
            .overflow(Overflow::Split)
            .max_batch_inputs(2)
            .build()
            .unwrap(),
    );
    // "w1 … w10" is three pieces, so 5 inputs in 3 requests; the server bills 10 tokens per
    // input of a request.
    let long = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10";
    let got = e.embed_with_usage(&["short", long, "x"]).await.unwrap();
    assert_eq!(got.vectors.len(), 3);
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(got.tokens, 50);

    let (a, b) = tokio::join!(e.embed_with_usage(&["a"; 3]), e.embed_with_usage(&["b"; 7]));
    assert_eq!((a.unwrap().tokens, b.unwrap().tokens), (30, 70));
    assert_eq!(e.usage().total_tokens, 150, "the embedder's own total");
    assert_eq!(e.embed_with_usage(&[]).await.unwrap().tokens, 0);
}

/// OpenAI's models have their documented limit of 8191 tokens, other models none unless
/// set, and without a limit an input is sent whole.
#[tokio::test]
async fn the_token_limit_is_known_for_openai_models_and_set_for_others() {
    let fake = Fake::start(vec![]).await;
    for model in [
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
    ] {
        let e = OpenAiEmbedder::builder(format!("http://{}/v1", fake.addr), model)
            .api_key(KEY)
            .build()
            .unwrap();
        assert_eq!(e.max_tokens(), Some(8191), "{model}");
        assert!(e.token_counter().is_none(), "the estimate is the default");
    }
    let unknown = fake.builder().build().unwrap();
    assert_eq!(unknown.max_tokens(), None);
    assert_eq!(
        fake.builder()
            .max_input_tokens(512)
            .build()
            .unwrap()
            .max_tokens(),
        Some(512)
    );
    let budget = sync_core::TokenBudget::of(Some(&unknown));
    assert_eq!(
        budget.id(),
        "approx:256",
        "extractors fall back to the defaults"
    );

    let words = |t: &str| t.split_whitespace().count();
    let whole = fake.builder().token_counter(words).build().unwrap();
    let long = vec!["word"; 10_000].join(" ");
    whole.embed(&[long.as_str()]).await.unwrap();
    assert_eq!(fake.requests().concat(), vec![long], "sent whole");
}
