//! The MySQL (MariaDB) side shared by the services: the pool built from
//! `DATABASE_URL`, waiting for the database at start, the schema migration,
//! and the mapping of driver errors to HTTP errors.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};

use crate::config::Env;
use crate::error::ApiError;

/// MySQL error numbers the services react to.
pub mod codes {
    /// ER_NO_REFERENCED_ROW_2: a foreign key points at a missing row.
    pub const NO_REFERENCED_ROW: u16 = 1452;
}

/// How long an idle connection beyond DB_POOL_MIN stays open.
const IDLE_CONNECTION_TTL: Duration = Duration::from_secs(60);

/// How long a request waits for a pooled connection before answering 503.
const CONN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct DbConfig {
    url: String,
    pub pool_min: usize,
    pub pool_max: usize,
    /// How long to wait at start for the database to accept connections.
    pub startup_timeout: Duration,
}

impl DbConfig {
    /// `DATABASE_URL` (required, `mysql://user:pass@host:port/db`),
    /// `DB_POOL_MAX` (default 16), `DB_POOL_MIN` (default 1),
    /// `DB_STARTUP_TIMEOUT_SECS` (default 120).
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self> {
        let url = env.required("DATABASE_URL")?;
        let pool_max = env.parse_or("DB_POOL_MAX", 16usize)?;
        let pool_min = env.parse_or("DB_POOL_MIN", 1usize)?;
        if pool_max == 0 {
            bail!("DB_POOL_MAX must be at least 1");
        }
        if pool_min > pool_max {
            bail!("DB_POOL_MIN ({pool_min}) must not exceed DB_POOL_MAX ({pool_max})");
        }
        let startup_timeout = Duration::from_secs(env.parse_or("DB_STARTUP_TIMEOUT_SECS", 120u64)?);
        Ok(Self { url, pool_min, pool_max, startup_timeout })
    }

    /// The pool (no connection is made yet; the host name is resolved).
    pub fn pool(&self) -> Result<Pool> {
        let opts = Opts::from_url(&self.url).context("DATABASE_URL is not a valid mysql:// URL")?;
        // The driver would resolve a host name through tokio (see
        // crate::resolve): hand it the address instead.
        let address = crate::resolve::resolve(opts.ip_or_hostname(), opts.tcp_port())
            .with_context(|| format!("resolving the database host {}", opts.ip_or_hostname()))?;
        let constraints = PoolConstraints::new(self.pool_min, self.pool_max).context("invalid pool size")?;
        let opts = OptsBuilder::from_opts(opts)
            .ip_or_hostname(address.ip().to_string())
            // No COM_RESET_CONNECTION when a connection goes back to the pool:
            // it costs a round trip and empties the server's (and driver's)
            // prepared-statement cache, so every query would be prepared
            // again. Nothing here leaves session state behind (the truncator
            // restores FOREIGN_KEY_CHECKS or drops its connection), and the
            // driver rolls back unfinished transactions itself.
            .pool_opts(
                PoolOpts::default()
                    .with_constraints(constraints)
                    .with_reset_connection(false)
                    // With a zero TTL (the default) the pool keeps only
                    // DB_POOL_MIN idle connections and closes every other one
                    // it gets back: under load each request would reconnect.
                    // With a TTL it keeps up to DB_POOL_MAX and shrinks back
                    // to DB_POOL_MIN after this much idleness.
                    .with_inactive_connection_ttl(IDLE_CONNECTION_TTL),
            )
            // The driver would otherwise ask the server for its Unix socket
            // and try it; a Wasm guest has no Unix sockets.
            .prefer_socket(false)
            // UPDATE reports rows matched, not rows changed, so "0 rows"
            // means "no such row (for this owner)" even when the new values
            // equal the old ones.
            .client_found_rows(true)
            // All DATETIME values are UTC, whatever the server's zone is.
            .init(vec!["SET time_zone = '+00:00'"]);
        Ok(Pool::new(opts))
    }

    /// `host:port/db` for logs: the URL without its credentials.
    pub fn display_target(&self) -> String {
        match Opts::from_url(&self.url) {
            Ok(o) => format!("{}:{}/{}", o.ip_or_hostname(), o.tcp_port(), o.db_name().unwrap_or("")),
            Err(_) => "<invalid DATABASE_URL>".into(),
        }
    }
}

/// Builds the pool, waits until the database answers, and applies the schema.
pub async fn connect_and_migrate(config: &DbConfig) -> Result<Pool> {
    let pool = config.pool()?;
    let target = config.display_target();
    wait_until_up(&pool, &target, config.startup_timeout).await?;
    migrate(&pool).await.context("applying the schema")?;
    log::info!("database {target} ready (pool {}..={})", config.pool_min, config.pool_max);
    Ok(pool)
}

/// Retries `SELECT 1` with backoff: in a compose-like start the database may
/// come up after the services.
async fn wait_until_up(pool: &Pool, target: &str, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        let attempt = async {
            let mut conn = pool.get_conn().await?;
            conn.query_drop("SELECT 1").await
        };
        match tokio::time::timeout(CONN_TIMEOUT, attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) if started.elapsed() + delay < timeout => log::warn!("database {target} not ready: {e}"),
            Err(_) if started.elapsed() + delay < timeout => log::warn!("database {target} not ready: timed out"),
            Ok(Err(e)) => return Err(e).with_context(|| format!("database {target} unreachable for {timeout:?}")),
            Err(_) => bail!("database {target} unreachable for {timeout:?}: connection timed out"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// The schema. Every statement is idempotent; ids are BIGINT UNSIGNED
/// AUTO_INCREMENT; times are DATETIME in UTC. Chats and messages refer to
/// the internal `sessions.id`, never to the secret `session_id`.
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS sessions (
        id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        session_id CHAR(26) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        name VARCHAR(64) NOT NULL,
        emoji VARCHAR(16) NOT NULL,
        expires_at DATETIME NOT NULL,
        created_at DATETIME NOT NULL,
        UNIQUE KEY sessions_session_id (session_id),
        KEY sessions_expires_at (expires_at)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
    "CREATE TABLE IF NOT EXISTS chats (
        id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(100) NOT NULL,
        description VARCHAR(1000) NOT NULL DEFAULT '',
        owner_id BIGINT UNSIGNED NOT NULL,
        created_at DATETIME NOT NULL,
        updated_at DATETIME NOT NULL,
        KEY chats_owner (owner_id),
        CONSTRAINT chats_owner_fk FOREIGN KEY (owner_id) REFERENCES sessions (id) ON DELETE CASCADE
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
    "CREATE TABLE IF NOT EXISTS messages (
        id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        chat_id BIGINT UNSIGNED NOT NULL,
        sender_id BIGINT UNSIGNED NOT NULL,
        text TEXT NOT NULL,
        created_at DATETIME NOT NULL,
        updated_at DATETIME NOT NULL,
        KEY messages_chat (chat_id, id),
        KEY messages_sender (sender_id),
        CONSTRAINT messages_chat_fk FOREIGN KEY (chat_id) REFERENCES chats (id) ON DELETE CASCADE,
        CONSTRAINT messages_sender_fk FOREIGN KEY (sender_id) REFERENCES sessions (id) ON DELETE CASCADE
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
];

/// Tables in an order that can be emptied child-first.
pub const TABLES_CHILD_FIRST: &[&str] = &["messages", "chats", "sessions"];

const MIGRATION_LOCK: &str = "chat_schema_migration";

/// Applies [`SCHEMA`] under a named lock, so services starting together run
/// it one after the other (CREATE TABLE IF NOT EXISTS alone is safe, but the
/// lock keeps the log free of lock-wait noise and makes future ALTERs safe).
pub async fn migrate(pool: &Pool) -> Result<()> {
    let mut conn = pool.get_conn().await.context("connecting")?;
    let locked: Option<Option<i64>> =
        conn.exec_first("SELECT GET_LOCK(?, 60)", (MIGRATION_LOCK,)).await.context("taking the migration lock")?;
    if locked.flatten() != Some(1) {
        bail!("could not take the migration lock {MIGRATION_LOCK} within 60 s");
    }
    let result = async {
        for statement in SCHEMA {
            conn.query_drop(*statement).await.with_context(|| format!("running {}", first_line(statement)))?;
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    // Released with the session anyway if this fails (or the connection dies).
    let _ = conn.exec_drop("SELECT RELEASE_LOCK(?)", (MIGRATION_LOCK,)).await;
    result
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim_end_matches(" (")
}

/// A pooled connection, or 503 if none can be had within a few seconds.
pub async fn conn(pool: &Pool) -> Result<Conn, ApiError> {
    match tokio::time::timeout(CONN_TIMEOUT, pool.get_conn()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(error("getting a database connection", e)),
        Err(_) => Err(ApiError::unavailable("database", "getting a database connection", &"timed out")),
    }
}

/// Runs a write guarded by its WHERE clause (e.g. `… AND owner_id = ?`):
/// a driver error maps as `error` does, and no matching row is `missing()`.
pub async fn exec_guarded<P>(
    conn: &mut Conn,
    sql: &str,
    params: P,
    context: &str,
    missing: impl FnOnce() -> ApiError,
) -> Result<(), ApiError>
where
    P: Into<mysql_async::Params> + Send,
{
    conn.exec_drop(sql, params).await.map_err(|e| error(context, e))?;
    // Rows matched (CLIENT_FOUND_ROWS): 0 means no such row of the caller's.
    if conn.affected_rows() == 0 {
        return Err(missing());
    }
    Ok(())
}

/// Maps a driver error to 503 (connection-level: database down or
/// unreachable) or 500 (anything else), logging it with `context`.
pub fn error(context: &str, e: mysql_async::Error) -> ApiError {
    match e {
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => ApiError::unavailable("database", context, &e),
        _ => ApiError::internal(context, &e),
    }
}

/// The server error code of `e`, if it is a server error.
pub fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// SQL for a DATETIME column as an RFC 3339 UTC string, so that every service
/// formats times the same way (`2024-05-01T12:00:00Z`).
#[macro_export]
macro_rules! rfc3339 {
    ($col:literal) => {
        concat!("DATE_FORMAT(", $col, ", '%Y-%m-%dT%H:%i:%sZ')")
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::env;


    #[test]
    fn config_from_env() {
        let c = DbConfig::from_env(&env(&[("DATABASE_URL", "mysql://u:secret@db:3307/chat")])).unwrap();
        assert_eq!((c.pool_min, c.pool_max), (1, 16));
        assert_eq!(c.display_target(), "db:3307/chat");
        assert!(!c.display_target().contains("secret"));
        // pool() resolves the host (crate::resolve): an address needs no DNS.
        let c = DbConfig::from_env(&env(&[("DATABASE_URL", "mysql://u:secret@127.0.0.1:3307/chat")])).unwrap();
        assert!(c.pool().is_ok());
        assert!(DbConfig::from_env(&env(&[])).is_err());
        let e = env(&[("DATABASE_URL", "mysql://h/db"), ("DB_POOL_MAX", "2"), ("DB_POOL_MIN", "3")]);
        assert!(DbConfig::from_env(&e).is_err());
        let e = env(&[("DATABASE_URL", "mysql://h/db"), ("DB_POOL_MAX", "0")]);
        assert!(DbConfig::from_env(&e).is_err());
        let bad = DbConfig::from_env(&env(&[("DATABASE_URL", "postgres://h/db")])).unwrap();
        assert!(bad.pool().is_err());
    }

    #[test]
    fn schema_is_idempotent_and_cascades() {
        for s in SCHEMA {
            assert!(s.starts_with("CREATE TABLE IF NOT EXISTS"), "{s}");
        }
        assert_eq!(SCHEMA.iter().filter(|s| s.contains("ON DELETE CASCADE")).count(), 2);
        assert!(SCHEMA[2].matches("ON DELETE CASCADE").count() == 2);
        assert_eq!(first_line(SCHEMA[1]), "CREATE TABLE IF NOT EXISTS chats");
    }

    #[test]
    fn rfc3339_macro() {
        assert_eq!(rfc3339!("created_at"), "DATE_FORMAT(created_at, '%Y-%m-%dT%H:%i:%sZ')");
    }
}
