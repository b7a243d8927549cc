//! The stable mutation fuzzer shared by the test-suite fuzz harnesses
//! (`crates/leadscore-server/tests/fuzz.rs` and the CSV importer's in
//! `crates/leadscore/tests/fuzz_csv.rs`), included by path; the coverage-guided targets
//! (`cargo +nightly fuzz`) are in `fuzz/fuzz_targets/` and share the corpora:
//! corpora in `fuzz/corpus/<target>/`, deterministic mutants (`LEADSCORE_FUZZ_SEED`),
//! `LEADSCORE_FUZZ_ITERATIONS` inputs per target (default 3,000), failures saved to
//! `target/fuzz-failures/`.

#![allow(dead_code, clippy::unwrap_used)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

/// xorshift64*: deterministic, so a failure is reproduced by its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Pieces of the formats the mutator inserts whole.
const TOKENS: &[&str] = &[
    "\"",
    "{",
    "}",
    "[",
    "]",
    "=",
    ",",
    ":",
    "\n",
    "[[fit]]",
    "[[activity]]",
    "[[bands]]",
    "1e308",
    "-1e308",
    "1e-320",
    "NaN",
    "inf",
    "-0",
    "0",
    "18446744073709551616",
    "null",
    "true",
    "\"\"",
    "\\u0000",
    "\\ud800",
    "é",
    "𝔘",
    "(.*)*",
    "((a+)+)+",
    "\"op\": \"regex\"",
    "\"op\": \"in\"",
    "op = \"between\"",
    "points = ",
    "per = \"0d\"",
    "half_life = \"1ms\"",
    "\"timestamp\": ",
    "\"9999-12-31T23:59:59Z\"",
    "\"1969-01-01T00:00:00Z\"",
    "\"all\": [",
    "\"not\": ",
    "{\"any\": []}",
    "within = \"100000d\"",
    // CSV: line ends, delimiters, quotes inside and around fields, a byte order mark.
    "\r\n",
    "\r",
    ";",
    "\t",
    ",,,",
    "\"\"\"",
    "\",\"",
    "\u{feff}",
    "\u{0}",
];

pub fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.insert(at, rng.next() as u8),
            2 if !out.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            3 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(32)).min(out.len());
                let piece = out[start..end].to_vec();
                out.splice(at..at, piece.iter().copied().cycle().take(piece.len() * (1 + rng.below(8))));
            }
            4 => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(other.len() + 1);
                out.truncate(at);
                out.extend_from_slice(&other[cut..]);
            }
            _ => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                out.splice(at..at, token.iter().copied());
            }
        }
    }
    out.truncate(64 * 1024);
    out
}

pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut inputs: Vec<(PathBuf, Vec<u8>)> =
        std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().path()).map(|path| (path.clone(), std::fs::read(path).unwrap())).collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no corpus in {}", dir.display());
    inputs.into_iter().map(|(_, bytes)| bytes).collect()
}

/// Runs `check` on the corpus and its mutants; a panic or an `Err` fails the test with the
/// input saved.
pub fn iterations() -> usize {
    std::env::var("LEADSCORE_FUZZ_ITERATIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(3_000)
}

pub fn fuzz(target: &str, check: impl Fn(&[u8]) -> Result<(), String>) {
    let iterations = iterations();
    let seed: u64 = std::env::var("LEADSCORE_FUZZ_SEED").ok().and_then(|n| n.parse().ok()).unwrap_or(0x1ead_5c0e);
    let inputs = corpus(target);
    let mut rng = Rng(seed | 1);
    for n in 0..inputs.len() + iterations {
        let input = if n < inputs.len() {
            inputs[n].clone()
        } else {
            let parent = rng.below(inputs.len());
            mutate(&mut rng, &inputs[parent], &inputs)
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
        let problem = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(problem)) => problem,
            Err(panic) => format!(
                "panicked: {}",
                panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
            ),
        };
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-failures");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{target}-{seed}-{n}"));
        std::fs::write(&file, &input).unwrap();
        panic!("{target}: input {n} (seed {seed}) failed: {problem}; saved to {}", file.display());
    }
}
