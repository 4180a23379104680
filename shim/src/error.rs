//! The shim's error type and its single mapping onto ttrpc status codes.

use containerd_shim::protos::ttrpc::{self, Code};

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0} is not supported by the wasmtime shim")]
    Unimplemented(&'static str),
    /// Anything else, with its whole context chain.
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = ShimError> = std::result::Result<T, E>;

impl ShimError {
    pub fn invalid(msg: impl std::fmt::Display) -> Self {
        Self::InvalidArgument(msg.to_string())
    }

    fn code(&self) -> Code {
        match self {
            Self::NotFound(_) => Code::NOT_FOUND,
            Self::AlreadyExists(_) => Code::ALREADY_EXISTS,
            Self::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            Self::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            Self::Unimplemented(_) => Code::UNIMPLEMENTED,
            Self::Internal(_) => Code::UNKNOWN,
        }
    }
}

impl From<shim_input::InputError> for ShimError {
    fn from(e: shim_input::InputError) -> Self {
        use shim_input::InputError;
        match e {
            InputError::Invalid(why) => Self::InvalidArgument(why),
            InputError::NotFound(why) => Self::NotFound(why),
            io @ InputError::Io { .. } => Self::Internal(io.into()),
        }
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_ttrpc_codes_with_message() {
        let e: ttrpc::Error = ShimError::NotFound("container c1 not found".into()).into();
        match e {
            ttrpc::Error::RpcStatus(s) => {
                assert_eq!(s.code(), Code::NOT_FOUND);
                assert_eq!(s.message(), "container c1 not found");
            }
            other => panic!("unexpected {other:?}"),
        }
        let e: ttrpc::Error = ShimError::Unimplemented("Exec").into();
        match e {
            ttrpc::Error::RpcStatus(s) => {
                assert_eq!(s.code(), Code::UNIMPLEMENTED);
                assert!(s.message().contains("Exec"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn internal_keeps_context_chain() {
        let inner = anyhow::anyhow!("no such file").context("read /app.wasm");
        let e = ShimError::from(inner);
        assert_eq!(e.to_string(), "read /app.wasm: no such file");
    }
}
