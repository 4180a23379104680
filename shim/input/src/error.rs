//! Why an input was refused. The shim maps these onto its own error (and so
//! onto ttrpc codes): `Invalid` is the caller's mistake, `NotFound` a name
//! that resolves to nothing, `Io` the node failing us.

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

impl InputError {
    pub fn invalid(msg: impl std::fmt::Display) -> Self {
        Self::Invalid(msg.to_string())
    }

    pub fn io(what: impl std::fmt::Display, source: std::io::Error) -> Self {
        Self::Io { what: what.to_string(), source }
    }
}
