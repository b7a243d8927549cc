//! How big a model may be. A model is parsed and compiled on every publish and by every
//! process that loads it, and its points are summed over millions of events: without
//! bounds, two rules of `points = 1e308` overflowed a score into infinity (stored state
//! unreadable) and a 3 MB model cost seconds per publish and a core while idle.

/// The largest |points| of one rule (or case, or inactivity step).
pub const MAX_POINTS: f64 = 1_000_000.0;
/// Fit and activity rules together.
pub const MAX_RULES: usize = 500;
/// Values of one `in` / `not_in` list.
pub const MAX_LIST_VALUES: usize = 1_000;
/// A model's description.
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;
/// A model's source text (TOML or JSON).
pub const MAX_MODEL_BYTES: usize = 256 * 1024;
