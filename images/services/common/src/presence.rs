//! Online presence in Redis, shared by the user service (which keeps it) and
//! the truncator (which clears it):
//!
//! * `chat:online`, a sorted set of internal session row ids scored by the
//!   last time (Unix ms) each one said it was online;
//! * `chat:user:<id>`, the name and emoji as JSON, expiring on its own
//!   shortly after the activity window, so nothing needs sweeping.
//!
//! Session ids are credentials and are never stored in Redis.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::ApiError;

pub const ONLINE_KEY: &str = "chat:online";

/// Users seen within this window are online.
pub const ACTIVE_WINDOW: Duration = Duration::from_secs(120);

/// How long a profile key outlives its last refresh.
pub const PROFILE_TTL: Duration = Duration::from_secs(150);

pub fn profile_key(id: u64) -> String {
    format!("chat:user:{id}")
}

/// `redis://[:password@]host:port[/db]` for logs, without the password.
pub fn display_target(url: &str) -> String {
    match redis::parse_redis_url(url) {
        Some(u) => format!("{}:{}{}", u.host_str().unwrap_or(""), u.port().unwrap_or(6379), u.path()),
        None => "<invalid REDIS_URL>".into(),
    }
}

/// A connection manager (one multiplexed connection that reconnects by
/// itself), retried with backoff for up to `timeout` at start.
pub async fn connect(url: &str, timeout: Duration) -> Result<ConnectionManager> {
    let target = display_target(url);
    // The client would resolve a host name through tokio (see
    // crate::resolve): give it the address instead.
    let mut parsed = redis::parse_redis_url(url).context("REDIS_URL is not a valid redis:// URL")?;
    if let Some(host) = parsed.host_str().map(str::to_owned) {
        let address = crate::resolve::resolve(&host, parsed.port().unwrap_or(6379))
            .with_context(|| format!("resolving the redis host {host}"))?;
        parsed.set_ip_host(address.ip()).map_err(|()| anyhow::anyhow!("REDIS_URL: cannot set its host"))?;
    }
    let client = redis::Client::open(parsed.as_str()).context("REDIS_URL is not a valid redis:// URL")?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(2);
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
            Ok(conn) => {
                log::info!("redis {target} ready");
                return Ok(conn);
            }
            Err(e) if started.elapsed() + delay < timeout => log::warn!("redis {target} not ready: {e}"),
            Err(e) => bail!("redis {target} unreachable for {timeout:?}: {e}"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// 503 when Redis is unreachable, 500 otherwise; logged with `context`.
pub fn error(context: &str, e: redis::RedisError) -> ApiError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        ApiError::unavailable("redis", context, &e)
    } else {
        ApiError::internal(context, &e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_targets() {
        assert_eq!(profile_key(42), "chat:user:42");
        assert_eq!(display_target("redis://:hunter2@cache:6380/1"), "cache:6380/1");
        assert_eq!(display_target("nonsense"), "<invalid REDIS_URL>");
        assert!(PROFILE_TTL > ACTIVE_WINDOW);
    }
}
