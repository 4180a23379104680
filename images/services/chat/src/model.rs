//! Chat request bodies, their validation, and the JSON a client gets back.
//! Pure code, unit-tested on the host.

use common::ApiError;
use serde::{Deserialize, Serialize};

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_DESCRIPTION_CHARS: usize = 1000;

#[derive(Debug, Deserialize)]
pub struct CreateChat {
    pub name: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct UpdateChat {
    pub id: Option<u64>,
    pub name: Option<String>,
    pub description: Option<String>,
}

/// A chat as clients see it. The owner appears by name and emoji; the
/// owner's session id is a credential and never leaves the server.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Chat {
    pub id: u64,
    pub name: String,
    pub description: String,
    pub owner_name: String,
    pub owner_emoji: String,
    /// Whether the caller owns the chat (may edit or delete it).
    pub is_owner: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// A name: not blank, at most [`MAX_NAME_CHARS`] characters, kept as given
/// apart from surrounding whitespace.
pub fn validate_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::bad_request(format!("name is longer than {MAX_NAME_CHARS} characters")));
    }
    Ok(name.to_string())
}

pub fn validate_description(description: &str) -> Result<String, ApiError> {
    let description = description.trim();
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::bad_request(format!("description is longer than {MAX_DESCRIPTION_CHARS} characters")));
    }
    Ok(description.to_string())
}

impl CreateChat {
    /// The validated (name, description).
    pub fn validate(self) -> Result<(String, String), ApiError> {
        let name = self.name.as_deref().ok_or_else(|| ApiError::bad_request("name is required"))?;
        Ok((validate_name(name)?, validate_description(self.description.as_deref().unwrap_or(""))?))
    }
}

impl UpdateChat {
    /// The id to update, checked before any database access.
    pub fn id(&self) -> Result<u64, ApiError> {
        match self.id {
            Some(id) if id > 0 => Ok(id),
            Some(_) => Err(ApiError::bad_request("id must be a positive integer")),
            None => Err(ApiError::bad_request("id is required")),
        }
    }

    /// The new (name, description) given the current ones; 400 when the
    /// request would change nothing.
    pub fn apply(&self, current_name: &str, current_description: &str) -> Result<(String, String), ApiError> {
        let name = match &self.name {
            Some(n) => validate_name(n)?,
            None => current_name.to_string(),
        };
        let description = match &self.description {
            Some(d) => validate_description(d)?,
            None => current_description.to_string(),
        };
        if name == current_name && description == current_description {
            return Err(ApiError::bad_request("nothing to change: name and description are unchanged"));
        }
        Ok((name, description))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::http::parse_json;

    #[test]
    fn create_requires_a_name() {
        let c: CreateChat = parse_json(br#"{"name":"  General ","description":"talk"}"#).unwrap();
        assert_eq!(c.validate().unwrap(), ("General".into(), "talk".into()));
        let c: CreateChat = parse_json(br#"{"name":"x"}"#).unwrap();
        assert_eq!(c.validate().unwrap(), ("x".into(), "".into()));
        let c: CreateChat = parse_json(br#"{"description":"d"}"#).unwrap();
        assert_eq!(c.validate().unwrap_err().message, "name is required");
        let c: CreateChat = parse_json(br#"{"name":"   "}"#).unwrap();
        assert_eq!(c.validate().unwrap_err().status, 400);
        assert!(parse_json::<CreateChat>(br#"{"name":5}"#).is_err());
        assert!(parse_json::<CreateChat>(br#"["name"]"#).is_err());
    }

    #[test]
    fn lengths_are_counted_in_characters() {
        assert!(validate_name(&"é".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(validate_name(&"é".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(validate_description(&"🦊".repeat(MAX_DESCRIPTION_CHARS)).is_ok());
        assert!(validate_description(&"a".repeat(MAX_DESCRIPTION_CHARS + 1)).is_err());
    }

    #[test]
    fn update_rules() {
        let u: UpdateChat = parse_json(br#"{"name":"New"}"#).unwrap();
        assert_eq!(u.id().unwrap_err().message, "id is required");
        let u: UpdateChat = parse_json(br#"{"id":0,"name":"New"}"#).unwrap();
        assert_eq!(u.id().unwrap_err().status, 400);
        let u: UpdateChat = parse_json(br#"{"id":3,"name":"New"}"#).unwrap();
        assert_eq!(u.id().unwrap(), 3);
        assert_eq!(u.apply("Old", "d").unwrap(), ("New".into(), "d".into()));
        assert_eq!(u.apply("New", "d").unwrap_err().status, 400);
        let u: UpdateChat = parse_json(br#"{"id":3}"#).unwrap();
        assert_eq!(u.apply("Old", "d").unwrap_err().status, 400);
        let u: UpdateChat = parse_json(br#"{"id":3,"description":""}"#).unwrap();
        assert_eq!(u.apply("Old", "d").unwrap(), ("Old".into(), "".into()));
        let u: UpdateChat = parse_json(br#"{"id":3,"name":""}"#).unwrap();
        assert_eq!(u.apply("Old", "d").unwrap_err().message, "name must not be empty");
        assert!(parse_json::<UpdateChat>(br#"{"id":"3"}"#).is_err());
    }

    #[test]
    fn chat_json_has_no_session_id() {
        let c = Chat {
            id: 1,
            name: "n".into(),
            description: "".into(),
            owner_name: "Brave Otter".into(),
            owner_emoji: "🦦".into(),
            is_owner: true,
            created_at: "2024-01-01T00:00:00Z".into(),
            updated_at: "2024-01-01T00:00:00Z".into(),
        };
        let s = serde_json::to_string(&c).unwrap();
        assert!(!s.contains("session"), "{s}");
        assert!(s.starts_with(r#"{"id":1,"name":"n""#), "{s}");
    }
}
