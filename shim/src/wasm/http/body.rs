//! Response bodies on their way to hyper: the head is held back until the
//! first body frame is there, so that head and body leave in one write.

use anyhow::Result;
use bytes::Bytes;
use http_body_util::BodyExt;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Holds the response head back until the body's first frame (or its end)
/// is there, as Go's net/http does until the first write, so that hyper
/// sends head and body in one write: the guest hands over the head before it
/// writes the body, and two writes per response cost a second segment and a
/// second wake-up of the client for every request.
pub(super) async fn with_first_frame(response: hyper::Response<HyperOutgoingBody>) -> Result<hyper::Response<HyperOutgoingBody>> {
    let (parts, mut body) = response.into_parts();
    let body = match body.frame().await {
        None => body,
        Some(Ok(first)) => Prefixed { first: Some(first), rest: body }.boxed_unsync(),
        // Nothing was sent yet, so the client can still get a clean 500.
        Some(Err(e)) => return Err(anyhow::Error::from(e).context("handler failed before writing the body")),
    };
    Ok(hyper::Response::from_parts(parts, body))
}

/// A body whose first frame was already read.
struct Prefixed {
    first: Option<hyper::body::Frame<Bytes>>,
    rest: HyperOutgoingBody,
}

impl hyper::body::Body for Prefixed {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        match self.first.take() {
            Some(frame) => std::task::Poll::Ready(Some(Ok(frame))),
            None => std::pin::Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let first = self.first.as_ref().and_then(|f| f.data_ref()).map_or(0, |d| d.len() as u64);
        let rest = self.rest.size_hint();
        let mut hint = hyper::body::SizeHint::new();
        hint.set_lower(rest.lower() + first);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + first);
        }
        hint
    }
}
