//! HTTP for the end-to-end tests: a small keep-alive client, a detached
//! wasi:http container on a free port, and a one-shot upstream server. Only
//! 127.0.0.1; every read is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::*;

/// A keep-alive HTTP/1.1 client over one connection.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(port: u16) -> std::io::Result<Self> {
        let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
        // A bound on every read: a hung server fails the test instead of hanging it.
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Self { reader: BufReader::new(stream) })
    }

    /// Sends `GET path`; returns (status, body).
    pub fn get(&mut self, path: &str) -> std::io::Result<(u16, String)> {
        self.send(path)?;
        self.read_response()
    }

    pub fn send(&mut self, path: &str) -> std::io::Result<()> {
        write!(self.reader.get_mut(), "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    }

    pub fn read_response(&mut self) -> std::io::Result<(u16, String)> {
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad(&line))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').ok_or_else(|| bad(header))?;
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim(), 16).map_err(|_| bad(&line))?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            body.resize(length.ok_or_else(|| bad("no content-length"))?, 0);
            self.reader.read_exact(&mut body)?;
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// One request on a connection of its own.
pub fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    Client::connect(port)?.get(path)
}

/// Waits until the server answers `/` (bounded).
pub fn wait_serving(port: u16) {
    let up = wait_until(Duration::from_secs(30), || matches!(get(port, "/"), Ok((200, _))));
    assert!(up, "nothing served on port {port}; containerd log tail: {}", tail(&containerd_log(), 20));
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A detached wasi:http container of `image_name` on the host network, on a free port.
pub struct Served {
    pub id: String,
    pub port: u16,
}

impl Served {
    pub fn start(image_name: &str, extra: &[&str]) -> Self {
        let id = unique("http");
        let port = free_port();
        let env = format!("WASI_HTTP_PORT={port}");
        // Loopback only: the container is on the host's network.
        let mut opts = vec!["--net-host", "--env", env.as_str(), "--env", "WASI_HTTP_ADDR=127.0.0.1"];
        opts.extend_from_slice(extra);
        let out = run_detached(&opts, image_name, &id, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        wait_serving(port);
        Self { id, port }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        remove(&self.id);
    }
}

/// Answers one HTTP request on 127.0.0.1 with `body`; the join handle
/// yields the request head it got.
pub fn upstream_once(body: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        s.write_all(reply.as_bytes()).unwrap();
        String::from_utf8_lossy(&head).into_owned()
    });
    (port, server)
}

/// A keep-alive HTTP/1.1 server on 127.0.0.1 answering `body` to each GET.
/// It serves up to `connections` connections, one after another, each until
/// the client has been quiet for 2 s (or, with `close_after_one`, right after
/// its first answer, like a server closing an idle connection); it waits at
/// most 10 s for each. The join handle yields the answers per connection.
pub fn upstream_keepalive(body: &'static str, connections: usize, close_after_one: bool) -> (u16, std::thread::JoinHandle<Vec<usize>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let mut answered = Vec::new();
        for _ in 0..connections {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let mut s = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                    Err(_) => return answered,
                }
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut count = 0;
            loop {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                if !head.ends_with(b"\r\n\r\n") {
                    break;
                }
                let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                if s.write_all(reply.as_bytes()).is_err() {
                    break;
                }
                count += 1;
                if close_after_one {
                    break;
                }
            }
            answered.push(count);
        }
        answered
    });
    (port, server)
}
