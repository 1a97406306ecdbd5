//! Typed errors with a bounded category, for metrics labels and Events.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the resource has no {0}")]
    MissingField(&'static str),
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("serialization: {0}")]
    Serde(#[from] serde_json::Error),
    #[error("certificates: {0}")]
    Pki(#[from] crate::pki::PkiError),
}

impl Error {
    /// A small, fixed set of values: safe as a metrics label.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(s)) if s.code == 404 => "not_found",
            Error::Kube(_) => "kube",
            Error::MissingField(_) => "missing_field",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Finalizer(_) => "finalizer",
            Error::Serde(_) => "serde",
            Error::Pki(_) => "pki",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
