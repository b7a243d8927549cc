//! The layering, checked: the HTTP crate calls the engine (`leadscore_app`) and never the
//! store beneath it, so every use case the API offers is one the CLI and the pages can call
//! too (ARCHITECTURE.md).

#![allow(clippy::unwrap_used)]

#[test]
fn handlers_call_the_engine_not_the_store() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if code.contains(".store.") {
                offenders.push(format!("{}:{}: {}", path.file_name().unwrap().to_string_lossy(), number + 1, line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "the server reaches past the engine into the store:\n{}", offenders.join("\n"));
}
