//! `GET /v1/openapi.json`: the OpenAPI document of the job API, derived at compile time from
//! the handlers' `#[utoipa::path]` annotations and the wire types they take and return (the
//! same structs the handlers serialize), so it cannot drift from the code.

use super::error::{
    BadRequest, Conflict, ErrorBody, Forbidden, NotFound, Stalled, TooLarge, Unauthorized,
    Unavailable, Unprocessable, UnsupportedType,
};
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "mediaflow job API",
        description = "Uploads, jobs, progress and outputs of a mediaflow deployment (`mediaflow serve`). Requests carry `Authorization: Bearer <API key>` once any key exists; upload, file and event-stream URLs carry short-lived tokens instead, so a browser never holds a key. Errors are `{\"error\": {\"code\", \"message\"}}`."
    ),
    paths(
        super::uploads::create,
        super::uploads::receive,
        super::multipart::receive_part,
        super::multipart::complete,
        super::jobs::create,
        super::jobs::list,
        super::jobs::show,
        super::jobs::cancel,
        super::jobs::retry,
        super::events::stream,
        super::files::get,
        super::files::get_signed,
        document,
    ),
    components(
        schemas(ErrorBody),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Stalled,
            Conflict,
            TooLarge,
            UnsupportedType,
            Unprocessable,
            Unavailable
        )
    ),
    modifiers(&BearerKeys),
    security(("api_key" = [])),
    tags(
        (name = "uploads", description = "Getting a file's bytes in: each upload makes a job"),
        (name = "jobs", description = "Jobs: create, follow, cancel, retry, and their outputs"),
        (name = "meta", description = "This document")
    )
)]
pub struct ApiDoc;

/// The `api_key` security scheme: a bearer API key.
struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from `mediaflow api-key create` (scopes `read`, `write`)",
                    ))
                    .build(),
            ),
        );
    }
}

/// `GET /v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    summary = "This document",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
pub async fn document() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}
