//! The library's error type for operations and passes, and how each maps to an exit code.

use crate::db::DbError;
use crate::domain::{BillingError, PlanId, Refusal};
use crate::stripe::GatewayError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// Bad input: a field's value, an id, a state the operation does not accept. The refusal
    /// names its field; this type's `Display` is the CLI's spelling of it.
    #[error("{0}")]
    Invalid(Refusal),
    #[error("{0}")]
    NotFound(String),
    /// A value that must be unique is taken (an external reference, a live plan): the
    /// caller's input, like `Invalid`, but the API answers 409.
    #[error("{0}")]
    Conflict(Refusal),
    #[error(transparent)]
    Billing(#[from] BillingError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// Another worker holds the single-worker lock (SQLite).
    #[error("{0}")]
    Busy(String),
    /// Not the caller's fault: a panic caught in a pass, a broken invariant, a listener that
    /// failed. Exit code 1, HTTP 500 `api_error`; logged with its context where it is caught.
    #[error("internal error: {0}")]
    Internal(String),
    /// This worker's lease on the plan expired and another worker claimed it (fencing): the
    /// plan is left to that worker.
    #[error("plan {0}: the lease was taken over by another worker")]
    LeaseLost(PlanId),
}

impl AppError {
    /// Exit code per `cli.md`: 2 for usage, input and configuration errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Invalid(_)
            | AppError::NotFound(_)
            | AppError::Conflict(_)
            | AppError::Billing(_) => 2,
            AppError::Db(
                DbError::BadUrl(_)
                | DbError::Missing(_)
                | DbError::SchemaOutdated
                | DbError::Lock(_),
            ) => 2,
            AppError::Db(e) if e.constraint().is_some() => 2,
            _ => 1,
        }
    }

    /// Whether a later attempt may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            AppError::Db(e) => e.is_retryable(),
            AppError::Gateway(e) => e.is_retryable(),
            AppError::Busy(_) => true,
            _ => false,
        }
    }
}

/// A refusal of the input as a whole (a plan's state, a combination of fields).
pub fn invalid(msg: impl Into<String>) -> AppError {
    AppError::Invalid(Refusal::new(msg))
}

/// A refusal of one field: `message` is about `field` (see [`Refusal::of`]).
pub fn refuse(field: &'static str, message: impl Into<String>) -> AppError {
    AppError::Invalid(Refusal::of(field, message))
}

/// A value of `field` that must be unique is taken.
pub fn conflict(field: &'static str, message: impl Into<String>) -> AppError {
    AppError::Conflict(Refusal::of(field, message))
}

impl From<Refusal> for AppError {
    fn from(r: Refusal) -> AppError {
        AppError::Invalid(r)
    }
}
