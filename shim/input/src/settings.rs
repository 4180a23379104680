//! wasi:http serving settings from a container's environment.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::env::last;

pub const PORT_ENV: &str = "WASI_HTTP_PORT";
pub const TIMEOUT_ENV: &str = "WASI_HTTP_TIMEOUT_MS";
pub const ADDR_ENV: &str = "WASI_HTTP_ADDR";
const DEFAULT_PORT: u16 = 8080;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;

/// Where a proxy component is served and how long a request may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// Every address of the network namespace by default; one address (e.g.
    /// 127.0.0.1 for a container on the host's network) when set.
    pub addr: IpAddr,
    pub port: u16,
    pub timeout: Duration,
}

impl HttpSettings {
    /// The last definition of a variable wins, as in a shell. The error
    /// names the variable and the value.
    pub fn from_env(env: &[(String, String)]) -> Result<Self, String> {
        let port = match last(env, PORT_ENV) {
            None => DEFAULT_PORT,
            Some(v) => v
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{PORT_ENV}={v:?} is not a TCP port number (1-65535)"))?,
        };
        let addr = match last(env, ADDR_ENV) {
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(v) => v
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .map_err(|_| format!("{ADDR_ENV}={v:?} is not an IP address (e.g. 127.0.0.1 or ::1)"))?,
        };
        let timeout = match last(env, TIMEOUT_ENV) {
            None => DEFAULT_TIMEOUT,
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| (1..=MAX_TIMEOUT_MS).contains(ms))
                .map(Duration::from_millis)
                .ok_or_else(|| format!("{TIMEOUT_ENV}={v:?} is not a request timeout in milliseconds (1-{MAX_TIMEOUT_MS})"))?,
        };
        Ok(Self { addr, port, timeout })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn settings_default_and_override() {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        assert_eq!(HttpSettings::from_env(&[]).unwrap(), HttpSettings { addr: any, port: 8080, timeout: Duration::from_secs(30) });
        let s = HttpSettings::from_env(&env(&[
            ("WASI_HTTP_PORT", "1"),
            ("WASI_HTTP_PORT", "9000"),
            ("WASI_HTTP_TIMEOUT_MS", "250"),
            ("WASI_HTTP_ADDR", "127.0.0.1"),
        ]))
        .unwrap();
        assert_eq!(s, HttpSettings { addr: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 9000, timeout: Duration::from_millis(250) });
        let v6 = HttpSettings::from_env(&env(&[("WASI_HTTP_ADDR", "[::1]")])).unwrap();
        assert_eq!(v6.addr, "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn bad_settings_name_the_variable() {
        for bad in ["0", "65536", "http", "", "-1"] {
            let err = HttpSettings::from_env(&env(&[("WASI_HTTP_PORT", bad)])).unwrap_err();
            assert!(err.starts_with("WASI_HTTP_PORT=") && err.contains("not a TCP port"), "{err}");
        }
        for bad in ["0", "abc", "86400001", "1.5"] {
            let err = HttpSettings::from_env(&env(&[("WASI_HTTP_TIMEOUT_MS", bad)])).unwrap_err();
            assert!(err.starts_with("WASI_HTTP_TIMEOUT_MS="), "{err}");
        }
        for bad in ["localhost", "", "127.0.0.1:80", "10.0.0.256"] {
            let err = HttpSettings::from_env(&env(&[("WASI_HTTP_ADDR", bad)])).unwrap_err();
            assert!(err.starts_with("WASI_HTTP_ADDR=") && err.contains("not an IP address"), "{err}");
        }
    }
}
