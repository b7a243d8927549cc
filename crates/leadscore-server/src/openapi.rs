//! `/openapi.json`: the OpenAPI 3.1 description of the API, derived from the code. Every
//! route is registered through utoipa-axum's `routes!` from a handler that carries
//! `#[utoipa::path]` (its summary, parameters, request body, answers and `x-scope`, the
//! scope its key needs), so a route cannot exist without its description; the schemas are
//! the `ToSchema` derives of the views the handlers answer. `tests/layering.rs` keeps the
//! routers to `routes!`, and the API tests check the served document against the server.
//!
//! What every operation shares is added here once: the `Error` answer for 4XX (unless the
//! route answers another shape, as the Segment dialect does) and the `apiKey` bearer
//! requirement of every route whose scope is not `none` (unless it names its own, as the
//! Segment dialect's HTTP Basic `writeKey` does).

use std::sync::{Arc, OnceLock};

use serde_json::Value;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, InfoBuilder, Ref, RefOr, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::error::{ErrorBody, SegmentErrorBody};

/// The scopes an operation's `x-scope` names: `none` (no key), or the scope its key must
/// hold (`admin` holds them all, `identify` holds `ingest`).
pub const SCOPES: [&str; 5] = ["none", "read", "ingest", "identify", "admin"];

#[derive(OpenApi)]
#[openapi(components(schemas(ErrorBody, SegmentErrorBody)))]
struct Shared;

/// Every route of the API, documented: the JSON API under `/api/v1` (wrapped by
/// `wrap_api`, which adds the audit log's middleware when serving), the Segment dialect and
/// the system routes.
pub fn routes(wrap_api: impl FnOnce(OpenApiRouter<Arc<AppState>>) -> OpenApiRouter<Arc<AppState>>) -> OpenApiRouter<Arc<AppState>> {
    use crate::*;
    let api = OpenApiRouter::new()
        .merge(contacts::router())
        .merge(events::router())
        .merge(models::router())
        .merge(automations::router())
        .merge(deliveries::router())
        .merge(outcomes::router())
        .merge(accounts::router())
        .merge(backtest::router())
        .merge(compare::router())
        .merge(predictive::router())
        .merge(reports::router())
        .merge(settings::router())
        .merge(keys::router())
        .merge(users::router());
    OpenApiRouter::with_openapi(Shared::openapi()).nest("/api/v1", wrap_api(api)).merge(segment::router()).merge(system::router())
}

/// The document `/openapi.json` answers, built once from [`routes`].
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| finish(routes(|api| api).into_openapi()))
}

/// The title, the security schemes, and what every operation shares (see the module's
/// comment).
fn finish(mut document: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    document.info = InfoBuilder::new().title("leadscore").version(env!("CARGO_PKG_VERSION")).description(Some("Self-hosted lead scoring engine")).build();
    let components = document.components.get_or_insert_with(Default::default);
    let mut bearer = Http::new(HttpAuthScheme::Bearer);
    bearer.description = Some("`Authorization: Bearer <API key>`".into());
    components.add_security_scheme("apiKey", SecurityScheme::Http(bearer));
    let mut basic = Http::new(HttpAuthScheme::Basic);
    basic.description = Some("Segment's write key (an ingest API key) as the HTTP Basic user name, or `writeKey` in the body".into());
    components.add_security_scheme("writeKey", SecurityScheme::Http(basic));
    let error = ResponseBuilder::new()
        .description("The error: `{ \"error\": { \"code\", \"message\", \"details\"? } }`")
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build())
        .build();
    for item in document.paths.paths.values_mut() {
        for operation in operations(item) {
            let scope = operation.extensions.as_ref().and_then(|e| e.get("x-scope")).and_then(Value::as_str).unwrap_or_default();
            if scope != "none" && operation.security.is_none() {
                operation.security = Some(vec![SecurityRequirement::new("apiKey", Vec::<String>::new())]);
            }
            operation.responses.responses.entry("4XX".into()).or_insert_with(|| RefOr::T(error.clone()));
        }
    }
    document
}

/// The operations of a path.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.options, &mut item.head, &mut item.patch, &mut item.trace]
        .into_iter()
        .filter_map(Option::as_mut)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use super::*;

    fn document_json() -> Value {
        serde_json::to_value(document()).unwrap()
    }

    /// Every `$ref` in `value`.
    fn refs(value: &Value, found: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    found.insert(target.clone());
                }
                map.values().for_each(|v| refs(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves() {
        let document = document_json();
        let mut found = BTreeSet::new();
        refs(&document, &mut found);
        assert!(found.len() > 50, "the views are referenced: {found:?}");
        for target in found {
            let name = target.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{target} is not a schema"));
            assert!(document["components"]["schemas"][name].is_object(), "{target} is referenced but not described");
        }
    }

    #[test]
    fn every_operation_says_its_scope_parameters_and_answers() {
        let document = document_json();
        assert_eq!(document["openapi"], "3.1.0");
        let paths = document["paths"].as_object().unwrap();
        assert!(paths.len() > 60, "{} paths", paths.len());
        for (path, item) in paths {
            let operations = item.as_object().unwrap();
            assert!(!operations.is_empty(), "{path}");
            for (method, operation) in operations {
                let scope = operation["x-scope"].as_str().unwrap_or_else(|| panic!("{method} {path} has no x-scope"));
                assert!(SCOPES.contains(&scope), "{method} {path}: x-scope {scope}");
                assert!(operation["summary"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path} has no summary");
                assert_eq!(operation["security"].is_array(), scope != "none", "{method} {path}: a key is needed unless the scope is none");
                let responses = operation["responses"].as_object().unwrap();
                assert!(responses.keys().any(|status| status.starts_with('2')), "{method} {path} has no success answer");
                assert!(responses.contains_key("4XX"), "{method} {path} has no error answer");
                // Every `{parameter}` of the path is described as a path parameter.
                let declared: BTreeSet<&str> =
                    operation["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap()).collect();
                let in_path: BTreeSet<&str> = path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
                assert_eq!(declared, in_path, "{method} {path}: path parameters");
            }
        }
    }
}
