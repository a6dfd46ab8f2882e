//! Fixtures shared by the store's integration tests.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::any::Any;
use std::sync::Arc;

use orca_store::sqlite::{SqliteOptions, SqliteStore};
use orca_store::Store;

/// A store and a key prefix that no other test uses, plus whatever must
/// live as long as the store (temp dirs, child processes).
pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub prefix: String,
    _guard: Box<dyn Any + Send>,
}

impl Fixture {
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }
}

/// A fresh embedded store in a temp dir.
pub async fn sqlite(test: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let store = SqliteStore::open(&dir.path().join("db/state.db"), SqliteOptions::default())
        .expect("opening the SQLite store");
    Fixture {
        store: Arc::new(store),
        prefix: format!("/registry/{test}/"),
        _guard: Box::new(dir),
    }
}
