//! What a failed call tells its caller: refused (a definite answer), not applied (retried until
//! the budget ran out), or outcome unknown (a write that may or may not have been applied).

use tonic::Code;

/// The error of every call of this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The address or the TLS options cannot make a connection.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// A definite answer from a writable master: the request was refused and not applied
    /// (`NotFound`, `InvalidArgument`: "version is older than", …). Retrying will not help.
    #[error("refused ({code:?}): {message}")]
    Refused {
        /// The gRPC code the server answered with.
        code: Code,
        /// The server's words.
        message: String,
    },
    /// Not applied: every attempt was refused before it ran or never reached a master (no master,
    /// overloaded, unreachable), until the retry budget ran out.
    #[error("not applied, gave up retrying ({code:?}): {message}")]
    Unavailable {
        /// The code of the last attempt.
        code: Code,
        /// What the last attempt got.
        message: String,
    },
    /// A write that may or may not have been applied, and that the master can no longer answer
    /// by its request id (older than its dedup window): retrying could apply it twice, so the
    /// caller decides, for example by reading the block.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
}

impl Error {
    /// The gRPC code behind the error (`Unknown` for an outcome unknown, `InvalidArgument` for a
    /// configuration error).
    pub fn code(&self) -> Code {
        match self {
            Error::Config(_) => Code::InvalidArgument,
            Error::Refused { code, .. } | Error::Unavailable { code, .. } => *code,
            Error::OutcomeUnknown(_) => Code::Unknown,
        }
    }

    /// True for [`Error::OutcomeUnknown`].
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::OutcomeUnknown(_))
    }
}
