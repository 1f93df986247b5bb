//! The OpenAPI 3.1 document of the callback service, generated from the handlers'
//! `#[utoipa::path]` annotations and the envelope types, served at `GET /openapi.json` and
//! committed as `proto/openapi.json` (a test keeps the two identical).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use crate::console::ReplayBody;
use crate::envelope::{ErrorCode, ErrorEnvelope, SuccessCode, SuccessEnvelope};
use crate::health::{
    ConsumerLag, HealthCode, HealthEnvelope, HealthReport, HealthStatus, LaneLag, NatsHealth,
    OpsStatus, OtomaxHealth,
};
use crate::outbox::OutboxRow;
use crate::rest::{InsertInboxBody, SetCallbackBody, TestBody};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wacenter callback service",
        description = "OtomaX outbox callbacks and the `/otomax/*` REST API of wacenter \
            (WhatsApp <-> OtomaX). Every answer except the ops endpoints is an envelope: \
            `{\"code\":\"SUCCESS\",\"message\":…,\"results\":{…}}`, or \
            `{\"code\":\"<ERROR_CODE>\",\"message\":…}` with the matching HTTP status. \
            Unknown routes answer 404 `NOT_FOUND`, a wrong method 405 `METHOD_NOT_ALLOWED`, \
            bodies over 1 MiB 413 `PAYLOAD_TOO_LARGE`. Admin routes need HTTP Basic auth with \
            a user of `APP_BASIC_AUTH`; without it configured they answer 401.",
        license(name = "MIT"),
    ),
    paths(
        crate::rest::insert_inbox,
        crate::rest::set_callback,
        crate::rest::get_callback,
        crate::rest::test,
        crate::rest::reseller,
        crate::rest::balance,
        crate::rest::reseller_balance,
        crate::console::search_trail,
        crate::console::live_trail,
        crate::console::dead_letters,
        crate::console::replay,
        crate::console::figures,
        crate::console::whatsapp_accounts,
        crate::outbox::callback,
        crate::outbox::callback_of_server,
        crate::health::health,
        crate::health::healthz_doc,
        crate::health::readyz_doc,
        crate::health::metrics_doc,
        openapi_json,
    ),
    components(schemas(
        SuccessEnvelope,
        SuccessCode,
        ErrorEnvelope,
        ErrorCode,
        InsertInboxBody,
        SetCallbackBody,
        TestBody,
        ReplayBody,
        OutboxRow,
        HealthEnvelope,
        HealthCode,
        HealthReport,
        HealthStatus,
        OtomaxHealth,
        NatsHealth,
        ConsumerLag,
        LaneLag,
        OpsStatus,
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "otomax", description = "Admin routes wrapping one OtomaX Open API call each (basic auth)"),
        (name = "console", description = "The trail, dead letters and figures: what the operator's console at /console shows and does (basic auth)"),
        (name = "callback", description = "Where OtomaX posts its outbox rows (callback secret)"),
        (name = "health", description = "Health of the OtomaX integration (no auth)"),
        (name = "ops", description = "Process liveness, readiness and metrics (no auth)"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic_auth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("A user:password of APP_BASIC_AUTH"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "callback_secret_query",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "secret",
                "OTOMAX_CALLBACK_SECRET in the URL OtomaX is told (what set-callback registers)",
            ))),
        );
        components.add_security_scheme(
            "callback_secret_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Callback-Secret",
                "OTOMAX_CALLBACK_SECRET as a header; the query parameter wins when both are given",
            ))),
        );
    }
}

/// An error answer with the envelope schema.
fn error_response(description: &str) -> RefOr<utoipa::openapi::response::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name(
                    ErrorEnvelope::name(),
                ))))
                .build(),
        )
        .build()
        .into()
}

/// 401 of every admin route.
pub struct AdminAuth;

impl IntoResponses for AdminAuth {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        BTreeMap::from([(
            "401".to_string(),
            error_response(
                "No or wrong basic-auth credentials, or APP_BASIC_AUTH not configured (the message says which)",
            ),
        )])
    }
}

/// The failures of an outbox callback, on either of its URLs.
pub struct CallbackFailures;

impl IntoResponses for CallbackFailures {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        BTreeMap::from([
            (
                "400".to_string(),
                error_response("Not an outbox row: malformed JSON, not an object, no recipient, recipient not a phone number"),
            ),
            ("401".to_string(), error_response("Wrong or missing callback secret")),
            ("403".to_string(), error_response("Caller not in OTOMAX_CALLBACK_ALLOW_IPS")),
            (
                "413".to_string(),
                error_response("Body over 1 MiB, or the message too large for the bus"),
            ),
            ("503".to_string(), error_response("NATS unreachable; OtomaX should retry")),
        ])
    }
}

/// 400 and 413 of every route that reads a JSON body.
pub struct BadBody;

impl IntoResponses for BadBody {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        BTreeMap::from([
            (
                "400".to_string(),
                error_response(
                    "Malformed JSON, a field missing or of the wrong type, or an invalid value (the message says which)",
                ),
            ),
            (
                "413".to_string(),
                error_response("The body is larger than 1 MiB"),
            ),
        ])
    }
}

/// 502 and 503 of every route that calls OtomaX.
pub struct OtomaxFailure;

impl IntoResponses for OtomaxFailure {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        BTreeMap::from([
            (
                "502".to_string(),
                error_response(
                    "OtomaX refused the call (its `desc` is in the message), failed, timed out, could not be reached, or answered something that is not its JSON envelope",
                ),
            ),
            (
                "503".to_string(),
                error_response("OtomaX is disabled on this service (OTOMAX_ENABLED=false)"),
            ),
            (
                "404".to_string(),
                error_response(
                    "No OtomaX server of that name in the routing table (`?otomax=`); the message lists the names",
                ),
            ),
        ])
    }
}

/// The schema of the lenient number fields of an outbox row: OtomaX sends them as numbers or
/// as strings of digits.
pub fn int_or_string(description: &str) -> Schema {
    OneOfBuilder::new()
        .description(Some(description))
        .item(ObjectBuilder::new().schema_type(Type::Integer))
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build()
        .into()
}

/// The document as served and committed: pretty JSON with a trailing newline.
pub fn document_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    operation_id = "openapi",
    summary = "This OpenAPI document",
    responses((status = 200, description = "The OpenAPI 3.1 document (also in the repository as proto/openapi.json)", body = Object))
)]
pub async fn openapi_json() -> Response {
    // Built once: the document is fixed at compile time.
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.get_or_init(document_json).clone(),
    )
        .into_response()
}
