//! The API's one error shape, `{"error": {"type", "message", "param"}}` as Stripe's, and how
//! the library's errors map to HTTP statuses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::db::DbError;
use crate::domain::refusal::{Refusal, Spelling};
use crate::error::AppError;

/// Seconds a client should wait before retrying while the database is away.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// The kind of an error: `invalid_request_error` (400, 404, 405, 413, 415),
/// `authentication_error` (401), `permission_error` (403), `idempotency_error` (400: a key
/// reused with another request), `conflict_error` (409: a concurrent change or a value that
/// must be unique), `service_unavailable` (503, with Retry-After), `api_error` (500: a bug,
/// logged, never expected).
///
/// The variants carry no doc comments on purpose: the OpenAPI document then describes the
/// type as one plain `enum` of strings, which every client generator parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    // Bad input (400), unknown id (404), wrong method (405), body too large (413), not JSON (415).
    InvalidRequestError,
    // No, a malformed, unknown, revoked or wrong token (401).
    AuthenticationError,
    // A read token on a write (403).
    PermissionError,
    // An idempotency key reused with another request (400).
    IdempotencyError,
    // A conflicting concurrent change or a unique value taken (409).
    ConflictError,
    // The database (or another dependency) is unreachable (503, with Retry-After).
    ServiceUnavailable,
    // A bug: reported, never expected (500).
    ApiError,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorType,
    pub message: String,
    pub param: Option<String>,
}

/// The body of every error response.
/// Every error response: `{"error": {"type", "message", "param"}}`.
#[derive(Serialize, schemars::JsonSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// One error.
#[derive(Serialize, schemars::JsonSchema)]
struct ErrorDetail {
    #[serde(rename = "type")]
    kind: ErrorType,
    /// The one-line message the CLI prints for the same refusal.
    message: String,
    /// The request field it is about, when there is one.
    param: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: ErrorType, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            param: None,
        }
    }

    /// A refusal of the request as a whole; [`ApiError::with_param`] names its field.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorType::InvalidRequestError,
            message,
        )
    }

    /// A refusal from an operation, with the field it names (its `param`) spelled as the
    /// API spells fields.
    fn refused(status: StatusCode, kind: ErrorType, r: &Refusal) -> ApiError {
        ApiError {
            param: r.field().map(str::to_string),
            ..ApiError::new(status, kind, r.render(Spelling::Wire))
        }
    }

    /// The same error, about the request field `param`.
    pub fn with_param(self, param: &str) -> ApiError {
        ApiError {
            param: Some(param.to_string()),
            ..self
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequestError,
            message,
        )
    }

    pub fn unauthenticated() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::AuthenticationError,
            "a valid API token is required: Authorization: Bearer pit_…",
        )
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        let message = e.to_string();
        match &e {
            AppError::NotFound(_) => ApiError::not_found(message),
            AppError::Invalid(r) => {
                ApiError::refused(StatusCode::BAD_REQUEST, ErrorType::InvalidRequestError, r)
            }
            AppError::Billing(_) => ApiError::invalid(message),
            AppError::Db(db) => from_db(db, message),
            AppError::Conflict(r) => {
                ApiError::refused(StatusCode::CONFLICT, ErrorType::ConflictError, r)
            }
            AppError::Busy(_) | AppError::LeaseLost(_) => {
                ApiError::new(StatusCode::CONFLICT, ErrorType::ConflictError, message)
            }
            AppError::Internal(_) => {
                tracing::error!(error = %message, "internal error in an API request");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorType::ApiError,
                    message,
                )
            }
            AppError::Gateway(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorType::ServiceUnavailable,
                message,
            ),
        }
    }
}

fn from_db(db: &DbError, message: String) -> ApiError {
    use diesel::result::{DatabaseErrorKind as K, Error as E};
    match db {
        _ if db.is_unavailable() => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::ServiceUnavailable,
            message,
        ),
        DbError::Busy(_) | DbError::SchemaOutdated => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::ServiceUnavailable,
            message,
        ),
        DbError::Query(E::DatabaseError(K::SerializationFailure, _)) => ApiError::new(
            StatusCode::CONFLICT,
            ErrorType::ConflictError,
            format!("a concurrent change conflicted with this one; retry it ({message})"),
        ),
        // PostgreSQL's lock time-out and deadlock detection: a concurrent change won.
        DbError::Query(E::DatabaseError(K::Unknown, info))
            if info.message().contains("lock timeout") || info.message().contains("deadlock") =>
        {
            ApiError::new(
                StatusCode::CONFLICT,
                ErrorType::ConflictError,
                format!("a concurrent change held the plan; retry it ({message})"),
            )
        }
        // What the CLI refuses with exit code 2: a unique or check constraint (an external
        // reference taken, …) is the caller's input.
        _ if db.constraint().is_some() => {
            ApiError::new(StatusCode::CONFLICT, ErrorType::ConflictError, message)
        }
        _ => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::ApiError,
            message,
        ),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_string(&ErrorBody {
            error: ErrorDetail {
                kind: self.kind,
                message: self.message,
                param: self.param,
            },
        })
        .unwrap_or_else(|_| r#"{"error":{"type":"api_error","message":"","param":null}}"#.into());
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_gives_its_field_as_param_and_internal_errors_are_500() {
        let e = ApiError::from(crate::error::refuse(
            "date",
            "must be after the plan's anchor",
        ));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.param.as_deref(), Some("date"));
        assert_eq!(e.message, "date must be after the plan's anchor");
        let taken = ApiError::from(crate::error::conflict("external_ref", "is taken"));
        assert_eq!(taken.status, StatusCode::CONFLICT);
        assert_eq!(taken.param.as_deref(), Some("external_ref"));
        let whole = ApiError::from(crate::error::invalid("plan 9 is not live (status ended)"));
        assert_eq!(whole.param, None);
        let bug = ApiError::from(AppError::Internal("plan 3 lost its successor".into()));
        assert_eq!(bug.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(bug.kind, ErrorType::ApiError);
    }

    #[test]
    fn statuses_follow_the_cli_exit_codes() {
        let e: ApiError = crate::error::invalid("bad").into();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e: ApiError = AppError::NotFound("plan 9 does not exist".into()).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e: ApiError = AppError::Db(DbError::Connect("refused".into())).into();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        let r = e.into_response();
        assert_eq!(
            r.headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("5")
        );
    }
}
