//! A named scoring group (hot/warm/cold, gold/silver): the first band, highest first,
//! whose `min` a score reaches. Contacts (in a model) and accounts (in its `[accounts]`
//! table) are banded alike.

#[derive(Clone, Debug, PartialEq)]
pub struct Band {
    pub name: String,
    /// None: everything below the bands above.
    pub min: Option<f64>,
}
