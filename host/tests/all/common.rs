//! Shared helpers: paths of built guests, a runtime, in-memory state.

use std::path::PathBuf;
use std::sync::Arc;

use weir::runtime::{StateError, StateReader};

/// Path of the built guest `name` (crate name with `-` as `_`).
pub fn guest_path(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/target/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.exists(),
        "guest {name} is not built at {}; run `cargo xtask guests` (or `cargo xtask test`)",
        path.display()
    );
    path
}

/// The bytes of the built guest `name`.
pub fn guest(name: &str) -> Vec<u8> {
    std::fs::read(guest_path(name)).expect("read guest")
}

pub use weir::runtime::MemState;

/// A reader whose every read fails, as a broken disk would.
pub struct BrokenState;

impl StateReader for BrokenState {
    fn get(&self, _key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Err(StateError("disk on fire".into()))
    }
}

/// A full host without the HTTP listener: store, runtime, components,
/// pipeline and handlers over a temporary directory.
pub struct TestHost {
    pub store: Arc<weir::store::Store>,
    pub handlers: Arc<weir::handlers::Handlers>,
    pub dir: tempfile::TempDir,
}

impl TestHost {
    pub fn new(topics: &[(&str, u32)]) -> Self {
        Self::with_settings(
            topics,
            weir::config::PipelineConfig {
                batch_size: 16,
                linger_ms: 0,
                ..Default::default()
            },
        )
    }

    pub fn with_settings(topics: &[(&str, u32)], settings: weir::config::PipelineConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(weir::store::Store::open(&dir.path().join("store")).unwrap());
        Self::over(dir, store, topics, settings)
    }

    /// The same data directory opened again, as after a restart: the loops
    /// stop, the store closes, and the persisted handlers and shadows start.
    pub fn restart(mut self) -> Self {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        drop(self);
        // sled's background threads from the previous handle may still hold
        // its file lock for a moment (a real restart is a new process).
        let path = dir.path().join("store");
        let store = (0..100)
            .find_map(|_| {
                weir::store::Store::open(&path).ok().or_else(|| {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    None
                })
            })
            .expect("store reopens");
        let settings = weir::config::PipelineConfig {
            batch_size: 16,
            linger_ms: 0,
            ..Default::default()
        };
        let host = Self::over(dir, Arc::new(store), &[], settings);
        host.handlers.start_all().unwrap();
        host.handlers.start_shadows().unwrap();
        host
    }

    fn over(
        dir: tempfile::TempDir,
        store: Arc<weir::store::Store>,
        topics: &[(&str, u32)],
        settings: weir::config::PipelineConfig,
    ) -> Self {
        for (t, p) in topics {
            store.ensure_topic(t, *p).unwrap();
        }
        let runtime = weir::runtime::Runtime::new().unwrap();
        let components =
            weir::runtime::ComponentStore::open(dir.path().join("components"), runtime.clone())
                .unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let pipeline = Arc::new(weir::pipeline::Pipeline::new(
            store.clone(),
            &runtime,
            settings,
            tx,
        ));
        let handlers = Arc::new(weir::handlers::Handlers::new(
            store.clone(),
            components,
            pipeline,
        ));
        Self {
            store,
            handlers,
            dir,
        }
    }

    pub fn state(&self) -> weir::admin::AppState {
        weir::admin::AppState::new(self.store.clone(), self.handlers.clone())
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        self.handlers.pipeline().shutdown();
    }
}
