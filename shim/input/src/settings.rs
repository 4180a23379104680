//! wasi:http serving settings from a container's environment.

use std::time::Duration;

use crate::env::last;

pub const PORT_ENV: &str = "WASI_HTTP_PORT";
pub const TIMEOUT_ENV: &str = "WASI_HTTP_TIMEOUT_MS";
const DEFAULT_PORT: u16 = 8080;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;

/// The port a proxy component is served on and how long a request may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
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
        Ok(Self { port, timeout })
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
        assert_eq!(HttpSettings::from_env(&[]).unwrap(), HttpSettings { port: 8080, timeout: Duration::from_secs(30) });
        let s = HttpSettings::from_env(&env(&[("WASI_HTTP_PORT", "1"), ("WASI_HTTP_PORT", "9000"), ("WASI_HTTP_TIMEOUT_MS", "250")])).unwrap();
        assert_eq!(s, HttpSettings { port: 9000, timeout: Duration::from_millis(250) });
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
    }
}
