//! The repository's documents stand on their own (issue 12.18): every relative link in the
//! README, ARCHITECTURE, BENCHMARKS, RELIABILITY and docs/ points at a file inside the repository, and
//! the README's tour dates its events relative to now (issue 12.13), so its story (Ada
//! turns hot, the hand-off fires) holds on any day.

#![allow(clippy::unwrap_used)]

use std::path::{Component, Path, PathBuf};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = ["README.md", "ARCHITECTURE.md", "BENCHMARKS.md", "RELIABILITY.md"].iter().map(|d| root.join(d)).collect();
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    docs
}

/// The targets of `[text](target)` links that are neither web addresses nor anchors.
fn relative_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split('#').next().unwrap_or_default().trim();
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            links.push(target.to_string());
        }
        rest = &rest[end..];
    }
    links
}

/// `path` without `.` and `..`, without touching the file system (so a target that does
/// not exist, or leaves the repository through `..`, is still judged).
fn normalized(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn every_relative_link_stays_inside_the_repository_and_exists() {
    let root = repository();
    let mut broken = Vec::new();
    for doc in documents(&root) {
        let text = std::fs::read_to_string(&doc).unwrap();
        for link in relative_links(&text) {
            let target = normalized(&doc.parent().unwrap().join(&link));
            if !target.starts_with(&root) || !target.exists() {
                broken.push(format!("{}: {link}", doc.strip_prefix(&root).unwrap().display()));
            }
        }
    }
    assert!(broken.is_empty(), "links that a clone of the repository cannot follow: {broken:#?}");
}

#[test]
fn the_tour_dates_its_events_relative_to_now() {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let start = readme.find("## A five-minute tour").unwrap();
    let end = start + readme[start..].find("\n## ").unwrap_or(readme.len() - start);
    let tour = &readme[start..end];
    let fixed: Vec<&str> = tour
        .lines()
        .filter(|line| line.contains("\"timestamp\":\"20") || line.contains("?at=20"))
        // The example of a refused event: a timestamp without a zone is refused on any day.
        .filter(|line| !line.contains("\"timestamp\":\"2026-11-20T10:00:00\"}"))
        .collect();
    assert!(fixed.is_empty(), "the tour's story changes with the day it is read: {fixed:#?}");
}
