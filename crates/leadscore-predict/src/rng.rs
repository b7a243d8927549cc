//! A tiny seeded PRNG and the stratified splits built on it.
//!
//! SplitMix64 (Steele, Lea & Flood 2014) is fixed by its published constants, so a seed gives
//! the same split on every platform and every version of this crate, which is what "same data +
//! seed ⇒ the same model bit for bit" needs. It is not for cryptography.

/// SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in 0..n (n > 0), by Lemire's multiply-shift; the bias is below 2^-40 for any n
    /// this crate uses, which does not matter for shuffling rows.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// A standard normal draw (Box–Muller), for synthetic data in tests and examples.
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Splits row indices into (train, holdout), both ascending, keeping each class's share: of
/// each class, `round(fraction × count)` rows chosen at random go to the holdout.
///
/// `train` uses exactly this split, so a caller (such as the scikit-learn comparison) can
/// reproduce it from the labels, the fraction and the seed.
pub fn stratified_split(labels: &[bool], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = SplitMix64::new(seed);
    let mut train = Vec::with_capacity(labels.len());
    let mut holdout = Vec::new();
    for class in [true, false] {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rng.shuffle(&mut members);
        let take = ((fraction * members.len() as f64).round() as usize).min(members.len());
        holdout.extend_from_slice(&members[..take]);
        train.extend_from_slice(&members[take..]);
    }
    train.sort_unstable();
    holdout.sort_unstable();
    (train, holdout)
}

/// Assigns each of `labels` to one of `k` folds, stratified: each class is shuffled and dealt
/// round-robin. Returns the fold of every position.
pub fn stratified_folds(labels: &[bool], k: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    let mut fold_of = vec![0; labels.len()];
    let mut dealt = 0;
    for class in [true, false] {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rng.shuffle(&mut members);
        for &member in &members {
            fold_of[member] = dealt % k.max(1);
            dealt += 1;
        }
    }
    fold_of
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // Reference values of SplitMix64 seeded with 1234567 (from the C reference implementation).
        let mut rng = SplitMix64::new(1234567);
        assert_eq!(rng.next_u64(), 6457827717110365317);
        assert_eq!(rng.next_u64(), 3203168211198807973);
    }

    #[test]
    fn stratified_split_keeps_class_shares_and_is_a_partition() {
        let labels: Vec<bool> = (0..1000).map(|i| i % 4 == 0).collect();
        let (train, holdout) = stratified_split(&labels, 0.2, 7);
        assert_eq!(holdout.len(), 200);
        assert_eq!(holdout.iter().filter(|&&i| labels[i]).count(), 50);
        let mut all: Vec<usize> = train.iter().chain(&holdout).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(stratified_split(&labels, 0.2, 7), (train.clone(), holdout.clone()));
        assert_ne!(stratified_split(&labels, 0.2, 8).1, holdout);
    }

    #[test]
    fn folds_are_balanced() {
        let labels: Vec<bool> = (0..100).map(|i| i % 5 == 0).collect();
        let folds = stratified_folds(&labels, 5, 1);
        for fold in 0..5 {
            let members: Vec<usize> = (0..100).filter(|&i| folds[i] == fold).collect();
            assert_eq!(members.len(), 20);
            assert_eq!(members.iter().filter(|&&i| labels[i]).count(), 4);
        }
    }
}
