//! Outbound `wasi:http/outgoing-handler` requests.

use std::future::Future;
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{WasiBody, WasiHttpHooks};

/// Outbound wasi:http: plain HTTP over hyper from the container's network
/// namespace (this runtime's threads are in it). HTTPS would need a TLS stack
/// and a trust store in the shim; it is refused instead.
pub(in crate::wasm) struct Outbound;

type SendFuture = Box<dyn Future<Output = wasmtime_wasi_http::Result<(hyper::Response<WasiBody>, IoFuture)>> + Send>;
type IoFuture = Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        Box::new(send_plain(request, options))
    }
}

async fn send_plain(
    mut request: hyper::Request<WasiBody>,
    options: Option<wasmtime_wasi_http::RequestOptions>,
) -> wasmtime_wasi_http::Result<(hyper::Response<WasiBody>, IoFuture)> {
    use wasmtime_wasi_http::Error;
    // The guest's request deadline bounds all of this anyway; these only
    // apply when the guest asks for less.
    const NO_LIMIT: Duration = Duration::from_secs(600);
    let uri = request.uri();
    if uri.scheme() != Some(&hyper::http::uri::Scheme::HTTP) {
        log::debug!("refusing outbound request to {uri}: only plain http is supported");
        return Err(Error::HttpRequestDenied);
    }
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
    let address = match authority.port() {
        Some(_) => authority.to_string(),
        None => format!("{authority}:80"),
    };
    let connect_timeout = options.and_then(|o| o.connect_timeout).unwrap_or(NO_LIMIT);
    let first_byte_timeout = options.and_then(|o| o.first_byte_timeout).unwrap_or(NO_LIMIT);
    let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(&address))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = tokio::time::timeout(connect_timeout, hyper::client::conn::http1::handshake(TokioIo::new(stream)))
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
    // The request line carries only the path: the authority went into Host.
    let path = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    *request.uri_mut() = hyper::Uri::builder().path_and_query(path).build().map_err(|_| Error::HttpRequestUriInvalid)?;
    let io = tokio::spawn(conn);
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    let io: IoFuture = Box::new(async move {
        match io.await {
            Ok(r) => r.map_err(Error::from),
            Err(e) => Err(Error::InternalError(Some(format!("outbound connection task: {e}")))),
        }
    });
    Ok((response, io))
}
