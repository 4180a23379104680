//! Message request bodies, query parameters and their validation, and the
//! JSON a client gets back. Pure code, unit-tested on the host.

use common::router::parse_id;
use common::ApiError;
use serde::{Deserialize, Serialize};

pub const MAX_TEXT_CHARS: usize = 4000;

#[derive(Debug, Deserialize)]
pub struct CreateMessage {
    pub chat_id: Option<u64>,
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct UpdateMessage {
    pub id: Option<u64>,
    pub text: Option<String>,
}

/// A message as clients see it: the sender by name and emoji (never by
/// session id, which is a credential), and whether the caller sent it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Message {
    pub id: u64,
    pub chat_id: u64,
    pub text: String,
    pub sender_name: String,
    pub sender_emoji: String,
    pub is_mine: bool,
    pub created_at: String,
    pub updated_at: String,
}

fn required_id(value: Option<u64>, field: &str) -> Result<u64, ApiError> {
    match value {
        Some(id) if id > 0 => Ok(id),
        Some(_) => Err(ApiError::bad_request(format!("{field} must be a positive integer"))),
        None => Err(ApiError::bad_request(format!("{field} is required"))),
    }
}

/// Text: required, not blank, at most [`MAX_TEXT_CHARS`] characters. Kept as
/// written (inner newlines and spacing matter in chat), only the ends trimmed.
pub fn validate_text(text: Option<&str>) -> Result<String, ApiError> {
    let text = text.ok_or_else(|| ApiError::bad_request("text is required"))?.trim();
    if text.is_empty() {
        return Err(ApiError::bad_request("text must not be empty"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::bad_request(format!("text is longer than {MAX_TEXT_CHARS} characters")));
    }
    Ok(text.to_string())
}

impl CreateMessage {
    /// The validated (chat_id, text).
    pub fn validate(&self) -> Result<(u64, String), ApiError> {
        Ok((required_id(self.chat_id, "chat_id")?, validate_text(self.text.as_deref())?))
    }
}

impl UpdateMessage {
    /// The validated (id, text).
    pub fn validate(&self) -> Result<(u64, String), ApiError> {
        Ok((required_id(self.id, "id")?, validate_text(self.text.as_deref())?))
    }
}

/// `GET /api/messages?chat_id=N[&fetch_from_message_id=M]`.
#[derive(Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub chat_id: u64,
    /// Only messages with a larger id; `None` means "the latest ones".
    pub after: Option<u64>,
}

impl ListQuery {
    pub fn parse(chat_id: Option<&str>, fetch_from: Option<&str>) -> Result<Self, ApiError> {
        let chat_id = chat_id.ok_or_else(|| ApiError::bad_request("query parameter chat_id is required"))?;
        let chat_id = parse_id(chat_id).ok_or_else(|| ApiError::bad_request("chat_id must be a positive integer"))?;
        let after = match fetch_from {
            None | Some("") => None,
            // 0 is allowed: "everything after nothing".
            Some("0") => Some(0),
            Some(m) => Some(
                parse_id(m)
                    .ok_or_else(|| ApiError::bad_request("fetch_from_message_id must be a non-negative integer"))?,
            ),
        };
        Ok(Self { chat_id, after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::http::parse_json;

    #[test]
    fn create_needs_chat_id_and_text() {
        let m: CreateMessage = parse_json(br#"{"chat_id":2,"text":" hi\nthere "}"#).unwrap();
        assert_eq!(m.validate().unwrap(), (2, "hi\nthere".into()));
        let m: CreateMessage = parse_json(br#"{"text":"hi"}"#).unwrap();
        assert_eq!(m.validate().unwrap_err().message, "chat_id is required");
        let m: CreateMessage = parse_json(br#"{"chat_id":2}"#).unwrap();
        assert_eq!(m.validate().unwrap_err().message, "text is required");
        let m: CreateMessage = parse_json(br#"{"chat_id":2,"text":"  "}"#).unwrap();
        assert_eq!(m.validate().unwrap_err().status, 400);
        let m: CreateMessage = parse_json(br#"{"chat_id":0,"text":"x"}"#).unwrap();
        assert_eq!(m.validate().unwrap_err().status, 400);
        assert!(parse_json::<CreateMessage>(br#"{"chat_id":"2","text":"x"}"#).is_err());
        assert!(parse_json::<CreateMessage>(br#"{"chat_id":2,"text":7}"#).is_err());
    }

    #[test]
    fn update_needs_id_and_text() {
        let m: UpdateMessage = parse_json(br#"{"id":5,"text":"edited"}"#).unwrap();
        assert_eq!(m.validate().unwrap(), (5, "edited".into()));
        let m: UpdateMessage = parse_json(br#"{"text":"edited"}"#).unwrap();
        assert_eq!(m.validate().unwrap_err().message, "id is required");
        let m: UpdateMessage = parse_json(br#"{"id":5}"#).unwrap();
        assert_eq!(m.validate().unwrap_err().message, "text is required");
    }

    #[test]
    fn text_length() {
        assert!(validate_text(Some(&"🦊".repeat(MAX_TEXT_CHARS))).is_ok());
        assert!(validate_text(Some(&"a".repeat(MAX_TEXT_CHARS + 1))).is_err());
    }

    #[test]
    fn list_query() {
        assert_eq!(ListQuery::parse(Some("3"), None).unwrap(), ListQuery { chat_id: 3, after: None });
        assert_eq!(ListQuery::parse(Some("3"), Some("0")).unwrap(), ListQuery { chat_id: 3, after: Some(0) });
        assert_eq!(ListQuery::parse(Some("3"), Some("17")).unwrap(), ListQuery { chat_id: 3, after: Some(17) });
        assert_eq!(ListQuery::parse(Some("3"), Some("")).unwrap().after, None);
        assert_eq!(ListQuery::parse(None, None).unwrap_err().status, 400);
        assert_eq!(ListQuery::parse(Some("x"), None).unwrap_err().status, 400);
        assert_eq!(ListQuery::parse(Some("0"), None).unwrap_err().status, 400);
        assert_eq!(ListQuery::parse(Some("3"), Some("-1")).unwrap_err().status, 400);
    }
}
