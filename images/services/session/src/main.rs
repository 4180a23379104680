//! The session service: `GET /api/sessions` creates a session with a random
//! readable name and emoji, a ULID `session_id`, valid for one day.

mod names;

use std::sync::Arc;

use anyhow::Result;
use common::http::{json, Request, Response};
use common::router::Router;
use common::server::{self, Handler, ServerConfig};
use common::{db, rfc3339, ulid, ApiError};
use hyper::{Method, StatusCode};
use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use serde::Serialize;

const DEFAULT_PORT: u16 = 8081;

#[derive(Clone, Copy)]
enum Route {
    Create,
}

struct Service {
    pool: Pool,
    router: Router<Route>,
}

/// The response body; field order is the documented one.
#[derive(Serialize)]
struct Session {
    session_id: String,
    name: String,
    emoji: &'static str,
    expires_at: String,
    created_at: String,
}

impl Handler for Service {
    async fn handle(&self, req: Request) -> Result<Response, ApiError> {
        match self.router.resolve(&req.method, &req.path)?.0 {
            Route::Create => self.create().await,
        }
    }
}

impl Service {
    async fn create(&self) -> Result<Response, ApiError> {
        let session_id = ulid::generate().map_err(|e| ApiError::internal("generating a session id", &e))?;
        let (name, emoji) = names::generate().map_err(|e| ApiError::internal("generating a name", &e))?;
        let mut conn = db::conn(&self.pool).await?;
        conn.exec_drop(
            "INSERT INTO sessions (session_id, name, emoji, expires_at, created_at) \
             VALUES (?, ?, ?, UTC_TIMESTAMP() + INTERVAL 1 DAY, UTC_TIMESTAMP())",
            (&session_id, &name, emoji),
        )
        .await
        .map_err(|e| db::error("inserting a session", e))?;
        let id = conn.last_insert_id().ok_or_else(|| ApiError::internal("inserting a session", &"no insert id"))?;
        let times: Option<(String, String)> = conn
            .exec_first(
                concat!("SELECT ", rfc3339!("expires_at"), ", ", rfc3339!("created_at"), " FROM sessions WHERE id = ?"),
                (id,),
            )
            .await
            .map_err(|e| db::error("reading the new session", e))?;
        let (expires_at, created_at) =
            times.ok_or_else(|| ApiError::internal("reading the new session", &"row vanished"))?;
        json(StatusCode::CREATED, &Session { session_id, name, emoji, expires_at, created_at })
    }
}

fn main() -> Result<()> {
    common::logger::init("session");
    let env = common::config::from_process();
    let server_config = ServerConfig::from_env(&env, DEFAULT_PORT)?;
    let db_config = db::DbConfig::from_env(&env)?;
    server::run(async move {
        let pool = db::connect_and_migrate(&db_config).await?;
        let router = Router::new().route(Method::GET, "/api/sessions", Route::Create);
        server::serve(server_config, Arc::new(Service { pool, router })).await
    })
}
