//! Configuration from environment variables. Every service reads its own
//! subset through these helpers, so parsing and error messages are uniform:
//! a bad value stops the service at start with a message naming the variable.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{bail, Context, Result};

/// Reads a variable through a lookup function, so tests need not touch the
/// process environment.
pub struct Env<F: Fn(&str) -> Option<String>> {
    lookup: F,
}

/// The process environment.
pub fn from_process() -> Env<impl Fn(&str) -> Option<String>> {
    Env::new(|k: &str| std::env::var(k).ok())
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn new(lookup: F) -> Self {
        Self { lookup }
    }

    /// The value of `key`, with surrounding whitespace removed; empty counts
    /// as unset.
    pub fn get(&self, key: &str) -> Option<String> {
        (self.lookup)(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    pub fn required(&self, key: &str) -> Result<String> {
        self.get(key).with_context(|| format!("environment variable {key} is required"))
    }

    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| anyhow::anyhow!("{key}={v:?} is invalid: {e}")),
        }
    }

    /// `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`, case-insensitive.
    pub fn flag(&self, key: &str) -> Result<bool> {
        match self.get(key).map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("false" | "0" | "no" | "off") => Ok(false),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some(other) => bail!("{key}={other:?} is invalid: expected true or false"),
        }
    }

    /// The address to listen on: `LISTEN_ADDR` (default 0.0.0.0) and
    /// `LISTEN_PORT` (default `default_port`).
    pub fn listen_addr(&self, default_port: u16) -> Result<SocketAddr> {
        let ip: IpAddr = self.parse_or("LISTEN_ADDR", IpAddr::V4(Ipv4Addr::UNSPECIFIED))?;
        let port: u16 = self.parse_or("LISTEN_PORT", default_port)?;
        Ok(SocketAddr::new(ip, port))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(crate) fn env(pairs: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Env::new(move |k: &str| map.get(k).cloned())
    }

    #[test]
    fn listen_addr_defaults_and_overrides() {
        assert_eq!(env(&[]).listen_addr(8081).unwrap(), "0.0.0.0:8081".parse().unwrap());
        let e = env(&[("LISTEN_PORT", " 9000 "), ("LISTEN_ADDR", "127.0.0.1")]);
        assert_eq!(e.listen_addr(8081).unwrap(), "127.0.0.1:9000".parse().unwrap());
        let err = env(&[("LISTEN_PORT", "70000")]).listen_addr(1).unwrap_err().to_string();
        assert!(err.contains("LISTEN_PORT"), "{err}");
    }

    #[test]
    fn flags_and_required() {
        assert!(env(&[("X", "TRUE")]).flag("X").unwrap());
        assert!(!env(&[]).flag("X").unwrap());
        assert!(env(&[("X", "maybe")]).flag("X").is_err());
        assert!(env(&[("X", "")]).required("X").is_err());
        assert_eq!(env(&[("X", "v")]).required("X").unwrap(), "v");
    }
}
