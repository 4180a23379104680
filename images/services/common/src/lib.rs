//! Code shared by the chat services: configuration from the environment,
//! stderr logging, the HTTP server loop (hyper 1 on a current_thread tokio
//! runtime), routing, JSON request/response helpers and errors, session
//! authentication, the MySQL pool and the schema migration.
//!
//! Everything here also builds for the host target so that the pure logic is
//! covered by `cargo test`; the services themselves target wasm32-wasip2.

pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod listener;
pub mod logger;
#[cfg(feature = "redis")]
pub mod presence;
pub mod resolve;
pub mod router;
pub mod server;
pub mod time;
pub mod ulid;

pub use error::ApiError;
pub use http::{Request, Response};
