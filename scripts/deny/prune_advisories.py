#!/usr/bin/env python3
"""Refreshes deny/advisory-db/ from a clone of the RustSec advisory database.

CI cannot reach the advisory database's host, so the advisories of the crates in Cargo.lock
are kept in the repository and `cargo deny check --disable-fetch` reads them (.ci/run). With
a clone of the database at DB (git clone of rustsec/advisory-db, done where that host is
reachable): scripts/deny/prune_advisories.py DB. It replaces deny/advisory-db/crates with
the advisories of every crate named in Cargo.lock (any version: cargo-deny decides which
apply) and records the snapshot's commit and date in deny/advisory-db/SNAPSHOT. Run it
again after adding dependencies, and at least every few months (.ci/run refuses a snapshot
older than deny.toml's maximum-db-staleness).
"""

import pathlib
import re
import shutil
import subprocess
import sys

root = pathlib.Path(__file__).resolve().parents[2]
db = pathlib.Path(sys.argv[1])
names = set(re.findall(r'\[\[package\]\]\nname = "([^"]+)"', (root / "Cargo.lock").read_text()))
target = root / "deny" / "advisory-db"
target.mkdir(parents=True, exist_ok=True)
shutil.rmtree(target / "crates", ignore_errors=True)
kept = 0
for advisory in sorted((db / "crates").glob("*/*.md")):
    if advisory.parent.name in names:
        destination = target / "crates" / advisory.parent.name / advisory.name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(advisory, destination)
        kept += 1
commit, date = subprocess.run(["git", "-C", str(db), "log", "-1", "--format=%H %cI"], capture_output=True, text=True, check=True).stdout.split()
(target / "SNAPSHOT").write_text(f"{commit}\n{date}\n")
print(f"kept {kept} advisories for {len(names)} crates in Cargo.lock; snapshot {commit} of {date}")
