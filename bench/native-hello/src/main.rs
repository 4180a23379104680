//! `native-hello PORT`: a native HTTP/1.1 hello server (hyper 1, tokio,
//! keep-alive) built like the shim's wasi:http server — one worker thread per
//! core, NODELAY, one response per request — so that bench/http.sh compares
//! a Wasm handler with the same work done natively.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn hello(_req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"hello from wasi:http\n")));
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    Ok(response)
}

fn main() {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(p)) => p,
        _ => {
            eprintln!("usage: native-hello PORT");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap_or_else(|e| {
        eprintln!("native-hello: runtime: {e}");
        std::process::exit(1);
    });
    runtime.block_on(async move {
        // Loopback only: it is a benchmark baseline, not a service.
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = TcpListener::bind(addr).await.unwrap_or_else(|e| {
            eprintln!("native-hello: listen on {addr}: {e}");
            std::process::exit(1);
        });
        eprintln!("native-hello: serving on {addr}");
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service_fn(hello)).await;
            });
        }
    });
}
