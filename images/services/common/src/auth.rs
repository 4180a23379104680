//! Session authentication: every `/api` route except creating a session
//! needs a `Session-Id` header naming an unexpired session.

use hyper::header::HeaderMap;
use mysql_async::prelude::Queryable;
use mysql_async::Pool;

use crate::error::ApiError;
use crate::{db, ulid};

pub const SESSION_HEADER: &str = "session-id";

/// The authenticated caller. `id` is the internal row id that chats and
/// messages refer to; `session_id` is the secret the client holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: u64,
    pub session_id: String,
    pub name: String,
    pub emoji: String,
}

/// The session id from the headers, checked for form only. Missing,
/// repeated, non-ASCII or malformed values are 401 without a database query.
pub fn session_id(headers: &HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all(SESSION_HEADER).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Err(ApiError::unauthorized("missing Session-Id header")),
        (Some(v), None) => v,
        (Some(_), Some(_)) => return Err(ApiError::unauthorized("more than one Session-Id header")),
    };
    match value.to_str().map(str::trim) {
        Ok(id) if ulid::is_valid(id) => Ok(id),
        _ => Err(invalid()),
    }
}

fn invalid() -> ApiError {
    ApiError::unauthorized("invalid or expired session")
}

/// Looks the caller's session up; unknown or expired is 401.
pub async fn authenticate(pool: &Pool, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let session_id = session_id(headers)?;
    let mut conn = db::conn(pool).await?;
    let row: Option<(u64, String, String)> = conn
        .exec_first(
            "SELECT id, name, emoji FROM sessions WHERE session_id = ? AND expires_at > UTC_TIMESTAMP()",
            (session_id,),
        )
        .await
        .map_err(|e| db::error("looking up the session", e))?;
    let (id, name, emoji) = row.ok_or_else(invalid)?;
    Ok(Caller { id, session_id: session_id.to_string(), name, emoji })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(SESSION_HEADER, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn header_parsing() {
        let id = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
        assert_eq!(session_id(&headers(&[id.as_bytes()])).unwrap(), id);
        assert_eq!(session_id(&headers(&[b" 01ARZ3NDEKTSV4RRFFQ69G5FAV "])).unwrap(), id);
        let missing = session_id(&headers(&[])).unwrap_err();
        assert_eq!(missing.status, 401);
        assert!(missing.message.contains("missing"));
        for bad in [&b"nope"[..], b"", b"01arz3ndektsv4rrffq69g5fav", b"01ARZ3NDEKTSV4RRFFQ69G5FA\xff", b"' OR 1=1 --"]
        {
            assert_eq!(session_id(&headers(&[bad])).unwrap_err().status, 401, "{bad:?}");
        }
        assert_eq!(session_id(&headers(&[id.as_bytes(), id.as_bytes()])).unwrap_err().status, 401);
    }
}
