//! The OpenAPI document of the `/v1` API, generated from the route
//! annotations and the request/response types, served at `/v1/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::events::{EventView, IncomingEvent};
use super::handlers::{PurgeBody, ReplayBody, RewindBody, RollbackBody};
use super::history::{HandlerHistory, HistoryAnswer, HistoryPoint};
use super::schemas::{CompatibilityBody, SchemaBody};
use super::{ErrorBody, ErrorDetail};
use crate::config::RetryPolicy;
use crate::handlers::{CanaryPolicy, CanaryRequest, HandlerSpec, PartitionStatus, RewindTarget};
use crate::handlers::{Difference, ShadowReport, Verdict};
use crate::runtime::Limits;
use crate::schema::Compatibility;

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Weir admin API", description = "Publish and read events, deploy and operate handlers."),
    paths(
        super::events::publish,
        super::events::read,
        super::events::list_topics,
        super::handlers::upload_component,
        super::handlers::list_components,
        super::handlers::list,
        super::handlers::show,
        super::handlers::put,
        super::handlers::delete,
        super::handlers::rollback,
        super::handlers::pause,
        super::handlers::resume,
        super::handlers::rewind,
        super::handlers::start_canary,
        super::handlers::promote_canary,
        super::handlers::abort_canary,
        super::handlers::dead_letters,
        super::handlers::replay,
        super::handlers::purge,
        super::cluster::status,
        super::history::history,
        super::schemas::register,
        super::schemas::list,
        super::schemas::get,
        super::schemas::set_compatibility,
        super::shadow::put,
        super::shadow::show,
        super::shadow::stop,
        super::shadow::report,
    ),
    components(schemas(
        IncomingEvent, EventView, HandlerSpec, Limits, RetryPolicy, RewindTarget, RewindBody,
        RollbackBody, ReplayBody, PurgeBody, PartitionStatus, ErrorBody, ErrorDetail,
        HistoryAnswer, HandlerHistory, HistoryPoint, SchemaBody, CompatibilityBody, Compatibility,
        CanaryRequest, CanaryPolicy,
        ShadowReport, Difference, Verdict
    )),
    modifiers(&BearerToken),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // Every /v1 route answers 401 without the token, when one is set.
        let unauthorized = ResponseBuilder::new()
            .description("Missing or wrong bearer token (`unauthorized`)")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                op.responses
                    .responses
                    .insert("401".into(), unauthorized.clone().into());
            }
        }
    }
}

pub(super) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
