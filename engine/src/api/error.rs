//! The API's errors: every one is `{"error": {"code", "message"}}` with the HTTP status that
//! fits, including axum's own rejections (malformed JSON, a wrong content type, a body too
//! large), which [`Json`] turns into the same shape.

use crate::index::IndexError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable code (`not_found`, `invalid_request`…).
    pub code: &'static str,
    /// Plain words.
    pub message: String,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(what: &str) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no {what}"))
    }

    /// 422 `unprocessable`.
    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", message)
    }

    /// 503 `unavailable`: try again.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

/// Every error's body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code to act on: `invalid_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `incomplete`, `timeout`, `too_large`, `unsupported_media_type`,
    /// `unprocessable`, `unavailable`…
    #[schema(example = "not_found")]
    code: &'static str,
    /// Plain words, saying what to do.
    message: String,
}

/// The error answers, as the OpenAPI document describes them (only described, never built:
/// every error is an [`ApiError`]).
macro_rules! error_responses {
    ($($name:ident => $description:literal,)*) => {$(
        #[doc = $description]
        #[derive(utoipa::ToResponse)]
        #[response(description = $description)]
        #[allow(dead_code)]
        pub struct $name(#[to_schema] ErrorBody);
    )*};
}

error_responses! {
    BadRequest => "A malformed request",
    Unauthorized => "No API key, or an unknown one",
    Forbidden => "A revoked key, a missing scope, or a wrong or expired token",
    NotFound => "No such job",
    Stalled => "The client stalled",
    Conflict => "The job or upload is not in a state that allows this",
    TooLarge => "Larger than allowed",
    UnsupportedType => "A content type that is not accepted",
    Unprocessable => "A request that is well-formed but wrong",
    Unavailable => "The index, queue or store is unavailable: try again",
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, message = %self.message, "API request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<IndexError> for ApiError {
    fn from(e: IndexError) -> ApiError {
        match e {
            IndexError::NotFound(_) => ApiError::not_found("such job"),
            IndexError::Conflict(why) => ApiError::new(StatusCode::CONFLICT, "conflict", why),
            e @ IndexError::Unavailable(_) => ApiError::unavailable(e.to_string()),
            e @ IndexError::Corrupt { .. } => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

/// A JSON body whose rejections are [`ApiError`]s.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(rejected(rejection)),
        }
    }
}

fn rejected(r: JsonRejection) -> ApiError {
    match &r {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        JsonRejection::JsonDataError(e) => ApiError::unprocessable(e.body_text()),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::invalid(format!("malformed JSON: {}", e.body_text()))
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request body is too large",
        ),
        other => ApiError::invalid(other.body_text()),
    }
}
