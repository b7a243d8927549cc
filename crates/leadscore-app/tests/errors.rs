//! Every use case answers its own error type (issue 11): what can go wrong there, by
//! name. `AppError` is only what those convert into for the front ends, so no function of
//! the engine returns it.

use std::path::Path;

#[test]
fn no_use_case_returns_the_front_ends_error_kinds() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n == "error.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source");
        // A signature may span lines: join each `fn` up to its body.
        for (at, _) in text.match_indices("fn ") {
            let signature = text[at..].split('{').next().unwrap_or_default();
            let returns = signature.split("->").nth(1).unwrap_or_default();
            if returns.contains("AppError") || returns.contains("AppResult") {
                offenders.push(format!("{}: {}", path.display(), signature.lines().next().unwrap_or_default().trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "use cases answer their own error types, not AppError:\n{}", offenders.join("\n"));
}
