//! The gateway's settings, from the environment the host gives each
//! request's instance: where each service is, where the UI's files are, how
//! long a service may take.

use std::time::Duration;

/// `/api/<segment>` → (service name, variable holding its URL, required).
/// The truncator is optional: without `TRUNCATOR_URL` its path is a 404.
const SERVICES: &[(&str, &str, &str, bool)] = &[
    ("sessions", "session", "SESSION_URL", true),
    ("chats", "chat", "CHAT_URL", true),
    ("messages", "message", "MESSAGE_URL", true),
    ("users", "user", "USER_URL", true),
    ("truncator", "truncator", "TRUNCATOR_URL", false),
];
const DEFAULT_STATIC_DIR: &str = "/www";
const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// `http://host:port` (port defaults to 80; no path, no TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

impl Address {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url:?} must start with http://"))?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(format!("{url:?} must be http://host:port with no path"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 literal without a port, e.g. [::1].
            Some((_, p)) if p.ends_with(']') => (authority, 80),
            Some((h, p)) => (h, p.parse().map_err(|_| format!("{url:?} has an invalid port"))?),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        Ok(Self { host: host.trim_start_matches('[').trim_end_matches(']').to_string(), port })
    }

    /// `host:port`, IPv6 literals in brackets.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A service behind the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The service's name, for errors and logs.
    pub name: &'static str,
    pub address: Address,
}

#[derive(Debug)]
pub struct Config {
    /// (path segment, service), in [`SERVICES`] order.
    upstreams: Vec<(&'static str, Upstream)>,
    /// How long a service may take to start answering.
    pub timeout: Duration,
}

impl Config {
    /// The last definition of a variable wins, as in a shell. An error names
    /// the variable.
    pub fn from_env(env: &[(String, String)]) -> Result<Self, String> {
        let get = |key: &str| env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let mut upstreams = Vec::new();
        for &(segment, name, var, required) in SERVICES {
            match get(var) {
                Some(url) => {
                    let address = Address::parse(url).map_err(|e| format!("{var} is invalid: {e}"))?;
                    upstreams.push((segment, Upstream { name, address }));
                }
                None if required => return Err(format!("{var} is not set")),
                None => {}
            }
        }
        let timeout = match get("REQUEST_TIMEOUT_SECS") {
            None => DEFAULT_TIMEOUT_SECS,
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| format!("REQUEST_TIMEOUT_SECS={v:?} is not a whole number of seconds above 0"))?,
        };
        Ok(Self { upstreams, timeout: Duration::from_secs(timeout) })
    }

    /// The service for `/api/<segment>`.
    pub fn route(&self, segment: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|(s, _)| *s == segment).map(|(_, u)| u)
    }
}

/// The UI's directory: `STATIC_DIR`, `/www` by default. Read on its own:
/// the UI is served even when an upstream is misconfigured.
pub fn static_dir(env: &[(String, String)]) -> &str {
    let dir = env.iter().rev().find(|(k, _)| k == "STATIC_DIR").map_or(DEFAULT_STATIC_DIR, |(_, v)| v.as_str());
    match dir.trim_end_matches('/') {
        "" => "/",
        d => d,
    }
}

/// `Some(segment)` for an API path (`/api`, `/api/`, `/api/<segment>…`),
/// `None` for anything else (the UI's files).
pub fn api_segment(path: &str) -> Option<&str> {
    let rest = match path.strip_prefix("/api") {
        Some("") => return Some(""),
        Some(rest) => rest.strip_prefix('/')?,
        None => return None,
    };
    Some(rest.split('/').next().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const ALL: &[(&str, &str)] = &[
        ("SESSION_URL", "http://127.0.0.1:8081"),
        ("CHAT_URL", "http://chat:8082/"),
        ("MESSAGE_URL", "http://[::1]:8083"),
        ("USER_URL", "http://user"),
    ];

    #[test]
    fn parses_addresses() {
        let a = Address::parse("http://127.0.0.1:8081").unwrap();
        assert_eq!(a, Address { host: "127.0.0.1".into(), port: 8081 });
        assert_eq!(a.authority(), "127.0.0.1:8081");
        assert_eq!(Address::parse("http://chat/").unwrap(), Address { host: "chat".into(), port: 80 });
        let v6 = Address::parse("http://[::1]:9000").unwrap();
        assert_eq!(v6, Address { host: "::1".into(), port: 9000 });
        assert_eq!(v6.authority(), "[::1]:9000");
        assert_eq!(Address::parse("http://[::1]").unwrap().port, 80);
        for bad in ["https://x:1", "x:1", "http://", "http://x:1/path", "http://x:port", "http://u@x:1", "http://:80"] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes_api_segments_to_their_services() {
        let config = Config::from_env(&env(ALL)).unwrap();
        assert_eq!(config.route("sessions").unwrap().address.authority(), "127.0.0.1:8081");
        assert_eq!(config.route("chats").unwrap().name, "chat");
        assert_eq!(config.route("messages").unwrap().address.authority(), "[::1]:8083");
        assert_eq!(config.route("users").unwrap().address.port, 80);
        // No TRUNCATOR_URL: no route, so a 404.
        assert!(config.route("truncator").is_none());
        assert!(config.route("").is_none() && config.route("message").is_none());
        assert_eq!((static_dir(&env(ALL)), config.timeout), ("/www", Duration::from_secs(30)));
        let mut more = env(ALL);
        more.extend(env(&[("TRUNCATOR_URL", "http://t:1"), ("STATIC_DIR", "/ui/"), ("REQUEST_TIMEOUT_SECS", "5")]));
        let config = Config::from_env(&more).unwrap();
        assert_eq!(config.route("truncator").unwrap().name, "truncator");
        assert_eq!((static_dir(&more), config.timeout), ("/ui", Duration::from_secs(5)));
    }

    #[test]
    fn configuration_errors_name_the_variable() {
        let err = Config::from_env(&env(&ALL[1..])).unwrap_err();
        assert_eq!(err, "SESSION_URL is not set");
        let mut bad = env(ALL);
        bad.push(("CHAT_URL".into(), "chat:8082".into()));
        assert!(Config::from_env(&bad).unwrap_err().starts_with("CHAT_URL is invalid"));
        let mut bad = env(ALL);
        bad.push(("REQUEST_TIMEOUT_SECS".into(), "0".into()));
        assert!(Config::from_env(&bad).unwrap_err().starts_with("REQUEST_TIMEOUT_SECS="));
    }

    #[test]
    fn tells_api_paths_from_files() {
        assert_eq!(api_segment("/api/messages"), Some("messages"));
        assert_eq!(api_segment("/api/messages/12"), Some("messages"));
        assert_eq!(api_segment("/api/chats/"), Some("chats"));
        assert_eq!(api_segment("/api"), Some(""));
        assert_eq!(api_segment("/api/"), Some(""));
        assert_eq!(api_segment("/apix"), None);
        assert_eq!(api_segment("/"), None);
        assert_eq!(api_segment("/assets/api/x.js"), None);
    }
}
