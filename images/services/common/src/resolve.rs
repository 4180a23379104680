//! Host names to addresses for outgoing connections (MySQL, Redis, the
//! gateway's upstreams).
//!
//! tokio resolves a name on a blocking-pool thread, and a Wasm guest cannot
//! spawn one: tokio panics ("OS can't spawn worker thread") and the service
//! aborts. On Kubernetes every peer is a name (`mysql:3306`, `session:8081`),
//! so names are resolved here with the standard library, which on
//! wasm32-wasip2 asks the host through `wasi:sockets/ip-name-lookup` (the
//! pod's resolv.conf: cluster DNS, search domains). A lookup blocks the
//! service's one thread for its duration: a DNS round trip to the node.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// The first address of HOST (a name, an IP address, or `[IPv6]`) at PORT.
/// An address is returned as it is, without a lookup.
pub fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (bare, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host}: the name has no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_need_no_lookup() {
        assert_eq!(resolve("127.0.0.1", 3306).unwrap(), "127.0.0.1:3306".parse().unwrap());
        assert_eq!(resolve("[::1]", 80).unwrap(), "[::1]:80".parse().unwrap());
        assert_eq!(resolve("::1", 80).unwrap(), "[::1]:80".parse().unwrap());
    }

    #[test]
    fn names_are_looked_up() {
        assert!(resolve("localhost", 6379).unwrap().ip().is_loopback());
    }
}
