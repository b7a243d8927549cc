//! The layering, checked: the HTTP crate calls the engine (`leadscore_app`) and never the
//! store beneath it, so every use case the API offers is one the CLI and the pages can call
//! too (ARCHITECTURE.md); and every route is registered with its OpenAPI description.

#![allow(clippy::unwrap_used)]

/// Every code line of the server's sources (comments cut off), as ("file:line: text", code).
fn code_lines() -> Vec<(String, String)> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default().to_string();
            lines.push((format!("{}:{}: {}", path.file_name().unwrap().to_string_lossy(), number + 1, line.trim()), code));
        }
    }
    lines
}

#[test]
fn handlers_call_the_engine_not_the_store() {
    let offenders: Vec<String> = code_lines().into_iter().filter(|(_, code)| code.contains(".store.")).map(|(place, _)| place).collect();
    assert!(offenders.is_empty(), "the server reaches past the engine into the store:\n{}", offenders.join("\n"));
}

/// Routes are registered only through utoipa-axum's `routes!` (`OpenApiRouter::routes`),
/// which takes them from handlers annotated with `#[utoipa::path]`: a route added with
/// axum's `.route(...)` would be served without being in /openapi.json. The one exception
/// is the JSON 404 (`api_not_found`) for unknown paths under /api/ and /v1/: not a route of
/// the API, but its answer to what is not one.
#[test]
fn every_route_is_registered_with_its_description() {
    let registers = |code: &str| [".route(", ".route_service(", ".nest_service(", ".fallback_service("].iter().any(|call| code.contains(call));
    let offenders: Vec<String> =
        code_lines().into_iter().filter(|(_, code)| registers(code) && !code.contains("api_not_found")).map(|(place, _)| place).collect();
    assert!(offenders.is_empty(), "routes registered without their OpenAPI description (use routes! with #[utoipa::path]):\n{}", offenders.join("\n"));
}
