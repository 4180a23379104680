//! The chat service: list, read, create, rename and delete chats. Only a
//! chat's owner may change or delete it; deleting a chat deletes its messages
//! (ON DELETE CASCADE).

mod model;

use std::sync::Arc;

use anyhow::Result;
use common::auth::{self, Caller};
use common::http::{json, Request, Response};
use common::router::{Params, Router};
use common::server::{self, Handler, ServerConfig};
use common::{db, rfc3339, ApiError};
use hyper::{Method, StatusCode};
use model::{Chat, CreateChat, UpdateChat};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool};

const DEFAULT_PORT: u16 = 8082;

/// Most chats a list returns (oldest first).
const LIST_LIMIT: u32 = 1000;

const SELECT_CHAT: &str = concat!(
    "SELECT c.id, c.name, c.description, s.name, s.emoji, c.owner_id, ",
    rfc3339!("c.created_at"),
    ", ",
    rfc3339!("c.updated_at"),
    " FROM chats c JOIN sessions s ON s.id = c.owner_id"
);

type ChatRow = (u64, String, String, String, String, u64, String, String);

#[derive(Clone, Copy)]
enum Route {
    List,
    Get,
    Create,
    Update,
    Delete,
}

struct Service {
    pool: Pool,
    router: Router<Route>,
}

impl Handler for Service {
    async fn handle(&self, req: Request) -> Result<Response, ApiError> {
        let (route, params) = self.router.resolve(&req.method, &req.path)?;
        let caller = auth::authenticate(&self.pool, &req.headers).await?;
        match route {
            Route::List => self.list(&caller).await,
            Route::Get => self.get(&caller, &params).await,
            Route::Create => self.create(&caller, req.json()?).await,
            Route::Update => self.update(&caller, req.json()?).await,
            Route::Delete => self.delete(&caller, &params).await,
        }
    }
}

fn to_chat(caller: &Caller, row: ChatRow) -> Chat {
    let (id, name, description, owner_name, owner_emoji, owner_id, created_at, updated_at) = row;
    Chat { id, name, description, owner_name, owner_emoji, is_owner: owner_id == caller.id, created_at, updated_at }
}

fn not_owner() -> ApiError {
    ApiError::unauthorized("no such chat, or you are not its owner")
}

impl Service {
    async fn list(&self, caller: &Caller) -> Result<Response, ApiError> {
        let mut conn = db::conn(&self.pool).await?;
        let rows: Vec<ChatRow> = conn
            .exec(format!("{SELECT_CHAT} ORDER BY c.id LIMIT {LIST_LIMIT}"), ())
            .await
            .map_err(|e| db::error("listing chats", e))?;
        let chats: Vec<Chat> = rows.into_iter().map(|r| to_chat(caller, r)).collect();
        json(StatusCode::OK, &chats)
    }

    async fn get(&self, caller: &Caller, params: &Params<'_>) -> Result<Response, ApiError> {
        let id = params.id(0, "chat")?;
        let mut conn = db::conn(&self.pool).await?;
        let chat = fetch(&mut conn, caller, id).await?.ok_or_else(|| ApiError::not_found("no such chat"))?;
        json(StatusCode::OK, &chat)
    }

    async fn create(&self, caller: &Caller, body: CreateChat) -> Result<Response, ApiError> {
        let (name, description) = body.validate()?;
        let mut conn = db::conn(&self.pool).await?;
        conn.exec_drop(
            "INSERT INTO chats (name, description, owner_id, created_at, updated_at) \
             VALUES (?, ?, ?, UTC_TIMESTAMP(), UTC_TIMESTAMP())",
            (&name, &description, caller.id),
        )
        .await
        .map_err(|e| db::error("inserting a chat", e))?;
        let id = conn.last_insert_id().ok_or_else(|| ApiError::internal("inserting a chat", &"no insert id"))?;
        let chat = fetch(&mut conn, caller, id)
            .await?
            // Deleted between insert and read (e.g. by the truncator).
            .ok_or_else(|| ApiError::not_found("no such chat"))?;
        json(StatusCode::CREATED, &chat)
    }

    async fn update(&self, caller: &Caller, body: UpdateChat) -> Result<Response, ApiError> {
        let id = body.id()?;
        let mut conn = db::conn(&self.pool).await?;
        let current: Option<(u64, String, String)> = conn
            .exec_first("SELECT owner_id, name, description FROM chats WHERE id = ?", (id,))
            .await
            .map_err(|e| db::error("reading a chat", e))?;
        let (owner_id, name, description) = current.ok_or_else(not_owner)?;
        if owner_id != caller.id {
            return Err(not_owner());
        }
        let (name, description) = body.apply(&name, &description)?;
        // The owner condition again: the check above and this update are not
        // one transaction, and the row may have gone in between.
        db::exec_guarded(
            &mut conn,
            "UPDATE chats SET name = ?, description = ?, updated_at = UTC_TIMESTAMP() WHERE id = ? AND owner_id = ?",
            (&name, &description, id, caller.id),
            "updating a chat",
            not_owner,
        )
        .await?;
        let chat = fetch(&mut conn, caller, id).await?.ok_or_else(not_owner)?;
        json(StatusCode::OK, &chat)
    }

    async fn delete(&self, caller: &Caller, params: &Params<'_>) -> Result<Response, ApiError> {
        let id = params.id(0, "chat")?;
        let mut conn = db::conn(&self.pool).await?;
        db::exec_guarded(&mut conn, "DELETE FROM chats WHERE id = ? AND owner_id = ?", (id, caller.id), "deleting a chat", not_owner)
            .await?;
        json(StatusCode::OK, &serde_json::json!({ "deleted": id }))
    }
}

async fn fetch(conn: &mut Conn, caller: &Caller, id: u64) -> Result<Option<Chat>, ApiError> {
    let row: Option<ChatRow> = conn
        .exec_first(format!("{SELECT_CHAT} WHERE c.id = ?"), (id,))
        .await
        .map_err(|e| db::error("reading a chat", e))?;
    Ok(row.map(|r| to_chat(caller, r)))
}

fn main() -> Result<()> {
    common::logger::init("chat");
    let env = common::config::from_process();
    let server_config = ServerConfig::from_env(&env, DEFAULT_PORT)?;
    let db_config = db::DbConfig::from_env(&env)?;
    server::run(async move {
        let pool = db::connect_and_migrate(&db_config).await?;
        let router = Router::new()
            .route(Method::GET, "/api/chats", Route::List)
            .route(Method::POST, "/api/chats", Route::Create)
            .route(Method::PUT, "/api/chats", Route::Update)
            .route(Method::GET, "/api/chats/{id}", Route::Get)
            .route(Method::DELETE, "/api/chats/{id}", Route::Delete);
        server::serve(server_config, Arc::new(Service { pool, router })).await
    })
}
