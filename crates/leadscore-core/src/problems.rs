//! Collects every problem found while validating a model or automation, each with the
//! path where it was found, so a user fixes them all in one round.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Where the problem is: `fit[0] "Job title".cases[2].when.op`, `decay.half_life`, …
    pub path: String,
    pub message: String,
}

#[derive(Clone, Debug, Default)]
pub struct Problems {
    items: Vec<Problem>,
}

impl Problems {
    pub fn add(&mut self, path: &str, message: &str) {
        self.items.push(Problem { path: path.to_string(), message: message.to_string() });
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn into_vec(self) -> Vec<Problem> {
        self.items
    }
}
