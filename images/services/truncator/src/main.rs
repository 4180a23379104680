//! The truncator, a development tool: `GET /api/truncator` empties every
//! table (resetting ids, so they restart at 1) and clears the online list.
//! It refuses to run unless `TRUNCATOR_ENABLED=true`, so an image deployed by
//! mistake is inert. When enabled it needs no session, as in the original
//! app: a client whose session is gone (e.g. after a truncation) can still
//! reset the database, and benchmarks can empty it between runs.

use std::sync::Arc;

use anyhow::Result;
use common::http::{json, Request, Response};
use common::router::Router;
use common::server::{self, Handler, ServerConfig};
use common::{db, presence, ApiError};
use hyper::{Method, StatusCode};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool};
use redis::aio::ConnectionManager;
use serde::Serialize;

const DEFAULT_PORT: u16 = 8085;

#[derive(Clone, Copy)]
enum Route {
    Truncate,
}

struct Service {
    enabled: bool,
    pool: Pool,
    redis: Option<ConnectionManager>,
    router: Router<Route>,
}

#[derive(Serialize)]
struct Truncated {
    truncated: &'static [&'static str],
    online_users_cleared: bool,
}

impl Handler for Service {
    async fn handle(&self, req: Request) -> Result<Response, ApiError> {
        let (Route::Truncate, _) = self.router.resolve(&req.method, &req.path)?;
        if !self.enabled {
            return Err(ApiError::forbidden(
                "the truncator is disabled; it is a development tool, enabled only when TRUNCATOR_ENABLED=true",
            ));
        }
        // No session check: the original contract (see the module comment).
        self.truncate().await
    }
}

impl Service {
    async fn truncate(&self) -> Result<Response, ApiError> {
        let mut conn = db::conn(&self.pool).await?;
        // TRUNCATE (unlike DELETE) resets AUTO_INCREMENT, but InnoDB refuses
        // it for tables that foreign keys point at unless the checks are off
        // for this connection.
        conn.query_drop("SET FOREIGN_KEY_CHECKS = 0").await.map_err(|e| db::error("disabling FK checks", e))?;
        let result = truncate_all(&mut conn).await;
        let restored = conn.query_drop("SET FOREIGN_KEY_CHECKS = 1").await;
        result?;
        if let Err(e) = restored {
            // Never return a connection with the checks off to the pool.
            let _ = conn.disconnect().await;
            return Err(db::error("re-enabling FK checks", e));
        }
        let online_users_cleared = match &self.redis {
            Some(redis) => {
                let mut redis = redis.clone();
                // Profile keys expire on their own; without the set nobody
                // is listed.
                redis::cmd("DEL")
                    .arg(presence::ONLINE_KEY)
                    .query_async::<()>(&mut redis)
                    .await
                    .map_err(|e| presence::error("clearing online users", e))?;
                true
            }
            None => false,
        };
        log::warn!("truncated all tables{}", if online_users_cleared { " and the online list" } else { "" });
        json(StatusCode::OK, &Truncated { truncated: db::TABLES_CHILD_FIRST, online_users_cleared })
    }
}

async fn truncate_all(conn: &mut Conn) -> Result<(), ApiError> {
    for table in db::TABLES_CHILD_FIRST {
        conn.query_drop(format!("TRUNCATE TABLE {table}")).await.map_err(|e| db::error("truncating", e))?;
    }
    Ok(())
}

fn main() -> Result<()> {
    common::logger::init("truncator");
    let env = common::config::from_process();
    let server_config = ServerConfig::from_env(&env, DEFAULT_PORT)?;
    let db_config = db::DbConfig::from_env(&env)?;
    let enabled = env.flag("TRUNCATOR_ENABLED")?;
    let redis_url = env.get("REDIS_URL");
    server::run(async move {
        if enabled {
            log::warn!("TRUNCATOR_ENABLED=true: GET /api/truncator empties the database");
        } else {
            log::info!("disabled (TRUNCATOR_ENABLED is not true): every request gets 403");
        }
        let pool = db::connect_and_migrate(&db_config).await?;
        let redis = match redis_url {
            Some(url) => Some(presence::connect(&url, db_config.startup_timeout).await?),
            None => None,
        };
        server::serve(server_config, Arc::new(Service { enabled, pool, redis, router: router() })).await
    })
}

fn router() -> Router<Route> {
    Router::new().route(Method::GET, "/api/truncator", Route::Truncate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderMap;

    /// A service whose database is a closed loopback port: a request that
    /// gets as far as the database fails with 503 at once.
    fn service(enabled: bool) -> Service {
        let env =
            common::config::Env::new(|k: &str| (k == "DATABASE_URL").then(|| "mysql://u:p@127.0.0.1:1/chat".into()));
        let config = db::DbConfig::from_env(&env).unwrap();
        Service { enabled, pool: config.pool().unwrap(), redis: None, router: router() }
    }

    fn get(path: &str) -> Request {
        Request {
            method: Method::GET,
            path: path.into(),
            query: None,
            headers: HeaderMap::new(),
            body: Default::default(),
            peer: None,
        }
    }

    fn status(service: &Service, req: Request) -> u16 {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        match rt.block_on(service.handle(req)) {
            Ok(resp) => resp.status().as_u16(),
            Err(e) => e.status.as_u16(),
        }
    }

    #[test]
    fn enabled_needs_no_session() {
        // Not 401: without a session the request goes straight to the
        // database (here unreachable, hence 503).
        assert_eq!(status(&service(true), get("/api/truncator")), 503);
    }

    #[test]
    fn disabled_is_forbidden_with_or_without_session() {
        assert_eq!(status(&service(false), get("/api/truncator")), 403);
        let mut req = get("/api/truncator");
        req.headers.insert("session-id", "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap());
        assert_eq!(status(&service(false), req), 403);
    }

    #[test]
    fn other_routes_and_methods() {
        assert_eq!(status(&service(true), get("/api/nothing")), 404);
        let mut req = get("/api/truncator");
        req.method = Method::POST;
        assert_eq!(status(&service(true), req), 405);
    }
}
