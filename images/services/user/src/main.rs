//! The user service: who is online. `POST /api/users` marks the caller
//! online, `PUT /api/users` refreshes that (clients call it periodically),
//! `GET /api/users` lists everyone seen in the last two minutes. State lives
//! in Redis (see `common::presence`); sessions are checked in MySQL.

mod model;

use std::sync::Arc;

use anyhow::Result;
use common::auth::{self, Caller};
use common::http::{json, Request, Response};
use common::presence::{self, ONLINE_KEY, PROFILE_TTL};
use common::router::Router;
use common::server::{self, Handler, ServerConfig};
use common::{db, time, ApiError};
use hyper::{Method, StatusCode};
use model::{OnlineUser, Profile};
use mysql_async::Pool;
use redis::aio::ConnectionManager;

const DEFAULT_PORT: u16 = 8084;

/// Most users one list returns (the most recently seen).
const LIST_LIMIT: usize = 1000;

#[derive(Clone, Copy)]
enum Route {
    List,
    MarkOnline,
}

struct Service {
    pool: Pool,
    redis: ConnectionManager,
    router: Router<Route>,
}

impl Handler for Service {
    async fn handle(&self, req: Request) -> Result<Response, ApiError> {
        let (route, _) = self.router.resolve(&req.method, &req.path)?;
        let caller = auth::authenticate(&self.pool, &req.headers).await?;
        match route {
            Route::List => self.list(&caller).await,
            Route::MarkOnline => self.mark_online(&caller).await,
        }
    }
}

impl Service {
    async fn mark_online(&self, caller: &Caller) -> Result<Response, ApiError> {
        let now = time::now_millis();
        let profile = Profile { name: caller.name.clone(), emoji: caller.emoji.clone() };
        let profile = serde_json::to_string(&profile).map_err(|e| ApiError::internal("encoding a profile", &e))?;
        // One MULTI/EXEC: the set entry never exists without its profile.
        let mut conn = self.redis.clone();
        redis::pipe()
            .atomic()
            .zadd(ONLINE_KEY, caller.id, now)
            .ignore()
            .set_ex(presence::profile_key(caller.id), profile, PROFILE_TTL.as_secs())
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| presence::error("marking a user online", e))?;
        let me = OnlineUser {
            name: caller.name.clone(),
            emoji: caller.emoji.clone(),
            last_seen_at: time::format_millis(now),
            is_me: true,
        };
        json(StatusCode::OK, &me)
    }

    async fn list(&self, caller: &Caller) -> Result<Response, ApiError> {
        let cutoff = model::cutoff(time::now_millis());
        let mut conn = self.redis.clone();
        // Drop the stale entries and read the live ones, most recent first.
        let (entries,): (Vec<(u64, f64)>,) = redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(ONLINE_KEY)
            .arg("-inf")
            .arg(format!("({cutoff}"))
            .ignore()
            .cmd("ZREVRANGEBYSCORE")
            .arg(ONLINE_KEY)
            .arg("+inf")
            .arg(cutoff)
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(LIST_LIMIT)
            .query_async(&mut conn)
            .await
            .map_err(|e| presence::error("listing online users", e))?;
        let profiles: Vec<Option<String>> = if entries.is_empty() {
            Vec::new()
        } else {
            let keys: Vec<String> = entries.iter().map(|(id, _)| presence::profile_key(*id)).collect();
            redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .map_err(|e| presence::error("reading user profiles", e))?
        };
        let users = model::online_users(caller.id, &entries, profiles, time::format_millis);
        json(StatusCode::OK, &users)
    }
}

fn main() -> Result<()> {
    common::logger::init("user");
    let env = common::config::from_process();
    let server_config = ServerConfig::from_env(&env, DEFAULT_PORT)?;
    let db_config = db::DbConfig::from_env(&env)?;
    let redis_url = env.required("REDIS_URL")?;
    server::run(async move {
        let pool = db::connect_and_migrate(&db_config).await?;
        let redis = presence::connect(&redis_url, db_config.startup_timeout).await?;
        let router = Router::new()
            .route(Method::GET, "/api/users", Route::List)
            .route(Method::POST, "/api/users", Route::MarkOnline)
            .route(Method::PUT, "/api/users", Route::MarkOnline);
        server::serve(server_config, Arc::new(Service { pool, redis, router })).await
    })
}
