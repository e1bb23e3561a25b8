//! The admin API's request bodies: any body on any write route gets a 2xx
//! or a 4xx with the JSON error shape; a 5xx or a panic is a finding.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;
use weir::admin::{AppState, Limits, router};

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/topics/orders/events"),
    ("PUT", "/v1/handlers/h"),
    ("POST", "/v1/handlers/h/rewind"),
    ("POST", "/v1/handlers/h/rollback"),
    ("POST", "/v1/handlers/h/dead-letters/replay"),
    ("POST", "/v1/components"),
];

struct Fixture {
    rt: tokio::runtime::Runtime,
    state: AppState,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(weir::store::Store::open(&dir.path().join("store")).expect("store"));
        store.ensure_topic("orders", 2).expect("topic");
        let runtime = weir::runtime::Runtime::new().expect("engine");
        let components =
            weir::runtime::ComponentStore::open(dir.path().join("components"), runtime.clone())
                .expect("components");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        std::mem::forget(rx);
        let pipeline = Arc::new(weir::pipeline::Pipeline::new(
            store.clone(),
            &runtime,
            weir::config::PipelineConfig::default(),
            tx,
        ));
        let handlers = Arc::new(weir::handlers::Handlers::new(store.clone(), components, pipeline));
        Fixture {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            state: AppState::new(store, handlers),
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let (method, uri) = ROUTES[pick as usize % ROUTES.len()];
    let f = fixture();
    let limits = Limits {
        max_body_bytes: 1 << 16,
        max_component_bytes: 1 << 16,
    };
    // Bodies must reach the parsers, so send the media type each route wants.
    let content_type = if uri == "/v1/components" {
        "application/wasm"
    } else {
        "application/json"
    };
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(Body::from(body.to_vec()))
        .expect("request");
    let response = f
        .rt
        .block_on(router(f.state.clone(), limits).oneshot(request))
        .expect("infallible");
    assert!(
        !response.status().is_server_error(),
        "{method} {uri} answered {} to {:?}",
        response.status(),
        String::from_utf8_lossy(body)
    );
});
