//! The one error type of request handling and its JSON rendering
//! (`{"error":"…"}`). Handlers return `Result<Response, ApiError>`; the server
//! turns an `ApiError` into a response, so no handler builds error bodies.

use std::fmt;

use hyper::StatusCode;

/// An error that becomes an HTTP error response.
///
/// `message` is what the client sees. Internal details (driver errors, I/O
/// errors) are logged where the error is created and never sent: a client gets
/// a generic message for every 5xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Value of the `Allow` header for 405 responses.
    pub allow: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), allow: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn method_not_allowed(allow: Vec<&str>) -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: "method not allowed".into(),
            allow: Some(allow.join(", ")),
        }
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body larger than {limit} bytes"))
    }

    /// A 500 whose cause is logged (with its whole context chain) but not sent.
    pub fn internal(context: &str, cause: &dyn fmt::Display) -> Self {
        log::error!("{context}: {cause}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
    }

    /// A 503 for a dependency (database, Redis, upstream) that is down; the
    /// cause is logged, not sent.
    pub fn unavailable(what: &str, context: &str, cause: &dyn fmt::Display) -> Self {
        log::error!("{context}: {cause}");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, format!("{what} unavailable"))
    }

    /// The response body, `{"error":"…"}`.
    pub fn body(&self) -> String {
        serde_json::json!({ "error": self.message }).to_string()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_escaped_json() {
        let e = ApiError::bad_request("bad \"quote\"");
        assert_eq!(e.body(), r#"{"error":"bad \"quote\""}"#);
    }

    #[test]
    fn method_not_allowed_lists_methods() {
        let e = ApiError::method_not_allowed(vec!["GET", "POST"]);
        assert_eq!(e.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(e.allow.as_deref(), Some("GET, POST"));
    }
}
