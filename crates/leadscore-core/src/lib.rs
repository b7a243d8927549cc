//! leadscore's pure domain: the model format, its validation, conditions and the scorer.
//!
//! Nothing here does IO or reads the clock: every function that depends on time takes the
//! instant as an argument (milliseconds since the Unix epoch). Everything else in
//! leadscore calls into this crate to score.

pub mod accounts;
pub mod automation;
pub mod band;
pub mod condition;
pub mod duration;
pub mod email;
pub mod limits;
pub mod model;
pub mod numbers;
pub mod problems;
pub mod report;
pub mod scorer;

pub use duration::Span;
pub use model::{Format, Model, ModelError};
pub use problems::Problem;
pub use scorer::{ActivityState, Award, DecayView, EventRef, ScoreCard, ScoreError};
