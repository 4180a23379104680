//! Path routing: a service lists `(method, pattern, route)` triples and gets
//! back the route and the `{…}` parameters, or the right 404/405 error.
//!
//! Patterns are literal segments and `{name}` placeholders. A trailing slash
//! is ignored (`PUT /api/chats/` and `PUT /api/chats` are the same route),
//! empty segments are not (`/api//chats` is unknown).

use hyper::Method;

use crate::error::ApiError;

pub struct Router<R: Copy> {
    routes: Vec<(Method, &'static str, R)>,
}

/// The values of a pattern's placeholders, in order.
#[derive(Debug, PartialEq, Eq)]
pub struct Params<'p>(Vec<&'p str>);

impl<'p> Params<'p> {
    pub fn get(&self, index: usize) -> Option<&'p str> {
        self.0.get(index).copied()
    }

    /// Placeholder `index` as a database id (a positive integer); anything
    /// else is a 400 naming `what`.
    pub fn id(&self, index: usize, what: &str) -> Result<u64, ApiError> {
        self.get(index).and_then(parse_id).ok_or_else(|| ApiError::bad_request(format!("invalid {what} id")))
    }
}

/// A positive decimal id without sign or leading `+`.
pub fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&n| n > 0)
}

impl<R: Copy> Default for Router<R> {
    fn default() -> Self {
        Self { routes: Vec::new() }
    }
}

impl<R: Copy> Router<R> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn route(mut self, method: Method, pattern: &'static str, route: R) -> Self {
        self.routes.push((method, pattern, route));
        self
    }

    /// The route for `method` and `path`: 404 when no pattern matches the
    /// path, 405 (with the allowed methods) when one matches but not for
    /// this method.
    pub fn resolve<'p>(&self, method: &Method, path: &'p str) -> Result<(R, Params<'p>), ApiError> {
        let mut allowed: Vec<&str> = Vec::new();
        for (m, pattern, route) in &self.routes {
            if let Some(params) = match_pattern(pattern, path) {
                if m == method {
                    return Ok((*route, params));
                }
                if !allowed.contains(&m.as_str()) {
                    allowed.push(m.as_str());
                }
            }
        }
        if allowed.is_empty() {
            Err(ApiError::not_found(format!("no route for {path}")))
        } else {
            Err(ApiError::method_not_allowed(allowed))
        }
    }
}

fn match_pattern<'p>(pattern: &str, path: &'p str) -> Option<Params<'p>> {
    let path = trim_trailing_slash(path);
    let pattern = trim_trailing_slash(pattern);
    let mut params = Vec::new();
    let mut want = pattern.split('/');
    let mut have = path.split('/');
    loop {
        match (want.next(), have.next()) {
            (None, None) => return Some(Params(params)),
            (Some(w), Some(h)) if w.starts_with('{') && w.ends_with('}') => {
                if h.is_empty() {
                    return None;
                }
                params.push(h);
            }
            (Some(w), Some(h)) if w == h => {}
            _ => return None,
        }
    }
}

fn trim_trailing_slash(p: &str) -> &str {
    if p.len() > 1 {
        p.strip_suffix('/').unwrap_or(p)
    } else {
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum R {
        List,
        Get,
        Create,
        Update,
        Delete,
    }

    fn router() -> Router<R> {
        Router::new()
            .route(Method::GET, "/api/chats", R::List)
            .route(Method::POST, "/api/chats", R::Create)
            .route(Method::PUT, "/api/chats/", R::Update)
            .route(Method::GET, "/api/chats/{id}", R::Get)
            .route(Method::DELETE, "/api/chats/{id}", R::Delete)
    }

    #[test]
    fn matches_methods_and_params() {
        let r = router();
        assert_eq!(r.resolve(&Method::GET, "/api/chats").unwrap().0, R::List);
        assert_eq!(r.resolve(&Method::GET, "/api/chats/").unwrap().0, R::List);
        assert_eq!(r.resolve(&Method::PUT, "/api/chats/").unwrap().0, R::Update);
        assert_eq!(r.resolve(&Method::PUT, "/api/chats").unwrap().0, R::Update);
        let (route, params) = r.resolve(&Method::DELETE, "/api/chats/42").unwrap();
        assert_eq!(route, R::Delete);
        assert_eq!(params.id(0, "chat").unwrap(), 42);
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_405() {
        let r = router();
        assert_eq!(r.resolve(&Method::GET, "/api/nope").unwrap_err().status, 404);
        assert_eq!(r.resolve(&Method::GET, "/api/chats/1/2").unwrap_err().status, 404);
        assert_eq!(r.resolve(&Method::GET, "/api//chats").unwrap_err().status, 404);
        assert_eq!(r.resolve(&Method::GET, "/").unwrap_err().status, 404);
        let e = r.resolve(&Method::PATCH, "/api/chats").unwrap_err();
        assert_eq!(e.status, 405);
        assert_eq!(e.allow.as_deref(), Some("GET, POST, PUT"));
        let e = r.resolve(&Method::POST, "/api/chats/7").unwrap_err();
        assert_eq!(e.allow.as_deref(), Some("GET, DELETE"));
    }

    #[test]
    fn ids_must_be_positive_integers() {
        for bad in ["", "0", "-1", "+1", "1.5", "abc", "99999999999999999999999", "1 "] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
        assert_eq!(parse_id("18446744073709551615"), Some(u64::MAX));
        let r = router();
        let (_, params) = r.resolve(&Method::GET, "/api/chats/x").unwrap();
        assert_eq!(params.id(0, "chat").unwrap_err().status, 400);
    }
}
