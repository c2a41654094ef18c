//! The HTTP API (axum), JSON under `/api/v1`. Handlers are thin: extract and
//! validate, call a port through the [`AppState`], map the outcome to a
//! status. The
//! OpenAPI 3.1 description is generated from the same handler declarations
//! (utoipa) and served at `/api/v1/openapi.json`.

mod admin;
pub mod auth;
mod channels;
pub mod dto;
pub mod error;
pub mod extract;
mod health;
pub mod kiosk;
mod metrics;
pub mod offers;
mod registry;
mod sms;
mod state;
mod subjects;
mod surplus;

pub use state::{AppState, Parts, Security};

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::error::ApiError;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pahlawan Pangan edge API",
        description = "Post surplus food, get it offered, claimed, picked up and delivered before it expires. \
            Every route but health, readiness, `POST /kiosk/pair`, `POST /notify/sms/inbound` (signed by the gateway), \
            `GET /notify/web-push` (a public key) and this document needs an RS256 bearer token, \
            or — for a paired kiosk page — its device cookie `pahlawan_kiosk` (HttpOnly, SameSite=Strict, from \
            `POST /kiosk/pair`), which acts as its recipient with the `ngo` role; a call made with the cookie that \
            changes anything must carry the kiosk's CSRF token in `X-CSRF-Token` (403 `csrf_token_invalid` otherwise), \
            and a refused cookie is a 401 (`unknown_device`, `device_expired`, `device_revoked`, `malformed_device_cookie`, or `insecure_transport`: \
            the cookie is set and taken only over HTTPS, or plain HTTP from the machine itself).",
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Routes that need a verified, rate-limited caller.
fn protected() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(registry::post_provider))
        .routes(routes!(registry::get_provider))
        .routes(routes!(registry::provider_card))
        .routes(routes!(registry::post_recipient))
        .routes(routes!(registry::get_recipient))
        .routes(routes!(channels::add, channels::list))
        .routes(routes!(channels::remove))
        .routes(routes!(surplus::post_surplus, surplus::list_surplus))
        .routes(routes!(surplus::get_surplus))
        .routes(routes!(surplus::claim))
        .routes(routes!(surplus::pickup))
        .routes(routes!(surplus::deliver))
        .routes(routes!(offers::accept))
        .routes(routes!(offers::decline))
        .routes(routes!(offers::pending))
        .routes(routes!(offers::stream_offers))
        .routes(routes!(health::sync_status))
        .routes(routes!(subjects::export))
        .routes(routes!(subjects::erase))
        .routes(routes!(kiosk::new_pairing))
        .routes(routes!(kiosk::session))
        .routes(routes!(kiosk::claims))
        .routes(routes!(kiosk::devices))
        .routes(routes!(kiosk::revoke))
        .routes(routes!(admin::status))
        .routes(routes!(admin::cells))
        .routes(routes!(admin::recipients))
        .routes(routes!(admin::providers))
        .routes(routes!(admin::surplus))
        .routes(routes!(admin::dlq))
        .routes(routes!(admin::dlq_retry))
        .routes(routes!(admin::dlq_resolve))
}

fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(kiosk::pair))
        .routes(routes!(sms::inbound))
        .routes(routes!(channels::web_push_key))
}

/// The API routes and their OpenAPI description, built from one declaration.
pub fn routes(edge: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let guarded = protected().route_layer(axum::middleware::from_fn_with_state(
        edge.clone(),
        auth::authenticate,
    ));
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", guarded.merge(public()))
        .split_for_parts();
    // Probes at the root too, where orchestrators look for them.
    let router = router
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    (router, openapi)
}

/// The variants of a tagged request body refuse unknown fields (serde's
/// `deny_unknown_fields` on the enum), which utoipa does not say of them:
/// the document says it, so a client's extra field is its own mistake.
fn closed_variants(doc: &mut serde_json::Value) {
    let variants = doc
        .pointer_mut("/components/schemas/NewChannelRequest/oneOf")
        .and_then(serde_json::Value::as_array_mut);
    for v in variants.into_iter().flatten() {
        if v.get("properties").is_some() {
            v["additionalProperties"] = false.into();
        }
    }
}

/// The served OpenAPI document: the generated one, with this edge's
/// configured limits (the listing's size and radius) where the declarations
/// hold the defaults, so the document states what this edge enforces.
fn document(openapi: &utoipa::openapi::OpenApi, config: &crate::config::EdgeConfig) -> String {
    let mut doc = serde_json::to_value(openapi).unwrap_or_default();
    let listing = doc
        .pointer_mut("/paths/~1api~1v1~1surplus/get/parameters")
        .and_then(serde_json::Value::as_array_mut);
    for param in listing.into_iter().flatten() {
        let name = param["name"].as_str().unwrap_or_default().to_string();
        let schema = &mut param["schema"];
        match name.as_str() {
            "radius_km" => {
                schema["maximum"] = config.http.max_radius_km.into();
                schema["default"] = config.matching.radius_km.into();
            }
            "limit" => {
                schema["maximum"] = config.http.max_list_items.into();
                schema["default"] = config.http.max_list_items.into();
            }
            _ => {}
        }
    }
    closed_variants(&mut doc);
    camel_case_links(&mut doc);
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into())
}

/// utoipa 5.5 writes a Link Object's fields in snake_case (`operation_id`,
/// `request_body`); OpenAPI spells them `operationId`, `operationRef` and
/// `requestBody`, and clients ignore the others.
fn camel_case_links(doc: &mut serde_json::Value) {
    let paths = doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.values_mut());
    let operations = paths
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|i| i.values_mut());
    let responses = operations
        .filter_map(|op| {
            op.get_mut("responses")
                .and_then(serde_json::Value::as_object_mut)
        })
        .flat_map(|r| r.values_mut());
    let links = responses
        .filter_map(|r| {
            r.get_mut("links")
                .and_then(serde_json::Value::as_object_mut)
        })
        .flat_map(|l| l.values_mut())
        .filter_map(serde_json::Value::as_object_mut);
    for link in links {
        for (from, to) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(v) = link.remove(from) {
                link.insert(to.to_string(), v);
            }
        }
    }
}

/// The whole application for one edge.
pub fn app(edge: AppState) -> Router {
    let (router, openapi) = routes(&edge);
    let spec = Arc::new(document(&openapi, &edge.config));
    let max_body = edge.config.http.max_body_bytes;
    router
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let spec = spec.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        spec.as_str().to_owned(),
                    )
                }
            }),
        )
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
            .into_response()
        })
        .route("/metrics", get(metrics::metrics))
        .merge(kiosk::page::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            edge.clone(),
            metrics::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            edge.clone(),
            metrics::track_unmatched,
        ))
        .layer(axum::Extension(Arc::new(offers::StreamSlots::default())))
        .layer(axum::Extension(kiosk::attempts(&edge.config)))
        .layer(axum::middleware::from_fn(kiosk::page::security_headers))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(edge)
}

/// A running HTTP server: the API behind the connection caps, timeouts
/// and (with `[http.tls]`) HTTPS of `http_listener`.
pub struct Server {
    inner: http_listener::HttpServer,
}

impl Server {
    pub async fn bind(edge: AppState) -> Result<Server, http_listener::ListenError> {
        let listener = edge.config.listener();
        let metrics = edge.metrics.conn.clone();
        let app = app(edge);
        let inner = http_listener::HttpServer::start(&listener, app, metrics).await?;
        Ok(Server { inner })
    }

    /// The API's address (HTTPS when `[http.tls]` is set).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    /// The extra plain-HTTP address (`http.plain_listen`), when set.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.inner.plain_addr()
    }

    /// Stops accepting, lets in-flight requests finish (SSE streams are cut
    /// after a grace period).
    pub async fn shutdown(self) {
        self.inner.shutdown().await;
    }
}
