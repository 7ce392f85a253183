//! The gate's refusals: one enum, mapped to OpenAI errors in one place (`api/error.rs`).

use crate::backend::TextError;
use crate::reasoning::params::PlanError;

/// Why the gate refused a request. Each kind maps to one OpenAI error, in `From<Invalid> for ApiError`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Invalid {
    /// The body is not a JSON object.
    #[error("{0}")]
    Body(String),
    /// A field's value is refused; `param` names it as the client wrote it.
    #[error("{message}")]
    Field { message: String, param: Option<String> },
    /// The prompt, or a token cap, does not fit the context.
    #[error("{message}")]
    ContextLength { message: String, param: String },
    /// The field asks for something this backend cannot do (a grammar, a verifier model).
    #[error("{message}")]
    Unsupported { message: String, param: String },
    /// The engine that templates and tokenizes (a remote one) is unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// The preparation itself failed (its thread panicked): the server's fault, not the request's.
    #[error("the request could not be prepared")]
    Internal,
}

impl Invalid {
    pub fn field(message: impl Into<String>, param: Option<&str>) -> Self {
        Self::Field { message: message.into(), param: param.map(str::to_string) }
    }

    pub fn unsupported(message: impl Into<String>, param: &str) -> Self {
        Self::Unsupported { message: message.into(), param: param.to_string() }
    }

    /// The field the error is about, as the client wrote it.
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::Field { param, .. } => param.as_deref(),
            Self::ContextLength { param, .. } | Self::Unsupported { param, .. } => Some(param),
            Self::Body(_) | Self::Unavailable(_) | Self::Internal => None,
        }
    }

    /// The text side failed on `param`'s text.
    pub fn text(e: TextError, param: &str) -> Self {
        match e {
            TextError::Invalid(message) => Self::field(message, Some(param)),
            TextError::TooLong(message) => Self::ContextLength { message, param: param.to_string() },
            TextError::Unavailable(m) => Self::Unavailable(m),
        }
    }
}

impl From<PlanError> for Invalid {
    fn from(e: PlanError) -> Self {
        Self::Field { message: e.message, param: Some(e.param) }
    }
}
