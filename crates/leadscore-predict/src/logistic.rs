//! L2-regularised logistic regression, solved by Newton's method (IRLS) with a Cholesky solve.
//!
//! The design matrix is sparse (one-hot columns), so each Newton step accumulates
//! `Xᵀ W X` row by row over the row's few nonzeros, in fixed chunks of rows whose partial sums
//! are added in chunk order: the result does not depend on the number of threads. Newton needs
//! a handful of steps to reach machine precision on this strictly convex problem, so the fit is
//! "solved", not "stopped after N epochs".

use rayon::prelude::*;

use crate::metrics::sigmoid;

/// Rows of a sparse design matrix; each row's entries are (column, value) sorted by column.
#[derive(Debug, Clone, Default)]
pub(crate) struct SparseRows {
    starts: Vec<usize>,
    entries: Vec<(u32, f64)>,
    columns: usize,
}

impl SparseRows {
    pub(crate) fn new(columns: usize) -> Self {
        SparseRows { starts: vec![0], entries: Vec::new(), columns }
    }

    pub(crate) fn push_row(&mut self, entries: &[(u32, f64)]) {
        self.entries.extend_from_slice(entries);
        self.starts.push(self.entries.len());
    }

    pub(crate) fn len(&self) -> usize {
        self.starts.len() - 1
    }

    pub(crate) fn row(&self, index: usize) -> &[(u32, f64)] {
        &self.entries[self.starts[index]..self.starts[index + 1]]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogisticFit {
    pub intercept: f64,
    pub weights: Vec<f64>,
    pub iterations: usize,
}

const MAX_NEWTON_STEPS: usize = 100;
/// Rows per partial sum; fixed (not derived from the thread count) so sums are reproducible.
const CHUNK_ROWS: usize = 2048;
/// Most partial gradient and Hessian sums held at once.
const MAX_PARTIALS: usize = 8;
/// Stop when every gradient component is below this times the number of rows.
const GRADIENT_TOLERANCE: f64 = 1e-10;

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn linear(row: &[(u32, f64)], weights: &[f64], intercept: f64) -> f64 {
    row.iter().fold(intercept, |sum, &(column, value)| sum + weights[column as usize] * value)
}

/// Penalised negative log-likelihood: Σ [log(1 + e^η) − y·η] + l2/2 · ‖w‖² (intercept free).
fn objective(x: &SparseRows, labels: &[bool], l2: f64, weights: &[f64], intercept: f64) -> f64 {
    let chunks: Vec<f64> = (0..x.len().div_ceil(CHUNK_ROWS))
        .into_par_iter()
        .map(|chunk| {
            let rows = chunk * CHUNK_ROWS..((chunk + 1) * CHUNK_ROWS).min(x.len());
            rows.map(|i| {
                let eta = linear(x.row(i), weights, intercept);
                softplus(eta) - if labels[i] { eta } else { 0.0 }
            })
            .sum()
        })
        .collect();
    chunks.iter().sum::<f64>() + 0.5 * l2 * weights.iter().map(|w| w * w).sum::<f64>()
}

/// Gradient and Hessian (full symmetric, row-major, intercept as the last index).
fn gradient_and_hessian(x: &SparseRows, labels: &[bool], l2: f64, weights: &[f64], intercept: f64) -> (Vec<f64>, Vec<f64>) {
    let p = x.columns;
    let size = p + 1;
    // Consecutive chunks share a partial sum so that at most MAX_PARTIALS Hessians are held at
    // once (each is columns² numbers); up to MAX_PARTIALS chunks, each has its own.
    let chunks = x.len().div_ceil(CHUNK_ROWS);
    let chunks_per_partial = chunks.div_ceil(MAX_PARTIALS).max(1);
    let partials: Vec<(Vec<f64>, Vec<f64>)> = (0..chunks.div_ceil(chunks_per_partial))
        .into_par_iter()
        .map(|partial| {
            let mut gradient = vec![0.0; size];
            let mut hessian = vec![0.0; size * size];
            let rows = partial * chunks_per_partial * CHUNK_ROWS..((partial + 1) * chunks_per_partial * CHUNK_ROWS).min(x.len());
            for (i, &label) in rows.clone().zip(&labels[rows]) {
                let row = x.row(i);
                let mu = sigmoid(linear(row, weights, intercept));
                let residual = mu - f64::from(u8::from(label));
                let curvature = mu * (1.0 - mu);
                for (k, &(a, xa)) in row.iter().enumerate() {
                    let a = a as usize;
                    gradient[a] += residual * xa;
                    let scaled = curvature * xa;
                    let hessian_row = &mut hessian[a * size..(a + 1) * size];
                    for &(b, xb) in &row[k..] {
                        hessian_row[b as usize] += scaled * xb;
                    }
                    hessian_row[p] += scaled;
                }
                gradient[p] += residual;
                hessian[p * size + p] += curvature;
            }
            (gradient, hessian)
        })
        .collect();
    let mut gradient = vec![0.0; size];
    let mut hessian = vec![0.0; size * size];
    for (partial_gradient, partial_hessian) in &partials {
        for (total, part) in gradient.iter_mut().zip(partial_gradient) {
            *total += part;
        }
        for (total, part) in hessian.iter_mut().zip(partial_hessian) {
            *total += part;
        }
    }
    for j in 0..p {
        gradient[j] += l2 * weights[j];
        hessian[j * size + j] += l2;
    }
    // Only the upper triangle was accumulated; mirror it.
    for a in 0..size {
        for b in 0..a {
            hessian[a * size + b] = hessian[b * size + a];
        }
    }
    (gradient, hessian)
}

/// Solves `a · x = b` for a symmetric positive definite `a` (row-major n×n), or `None` when `a`
/// is not positive definite.
pub(crate) fn cholesky_solve(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let mut l = vec![0.0; n * n];
    for j in 0..n {
        let mut diagonal = a[j * n + j];
        for k in 0..j {
            diagonal -= l[j * n + k] * l[j * n + k];
        }
        if diagonal <= 0.0 || !diagonal.is_finite() {
            return None;
        }
        let pivot = diagonal.sqrt();
        l[j * n + j] = pivot;
        for i in j + 1..n {
            let mut sum = a[i * n + j];
            for k in 0..j {
                sum -= l[i * n + k] * l[j * n + k];
            }
            l[i * n + j] = sum / pivot;
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut sum = b[i];
        for k in 0..i {
            sum -= l[i * n + k] * y[k];
        }
        y[i] = sum / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut sum = y[i];
        for k in i + 1..n {
            sum -= l[k * n + i] * x[k];
        }
        x[i] = sum / l[i * n + i];
    }
    Some(x)
}

/// Fits the model; `progress` hears the number of each Newton step as it starts.
pub(crate) fn fit_logistic(x: &SparseRows, labels: &[bool], l2: f64, progress: &mut dyn FnMut(usize)) -> LogisticFit {
    let p = x.columns;
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let rate = ((positives + 0.5) / (labels.len() as f64 + 1.0)).clamp(1e-6, 1.0 - 1e-6);
    // Start from the base rate: the first Newton step then only has the features to learn.
    let mut intercept = (rate / (1.0 - rate)).ln();
    let mut weights = vec![0.0; p];
    let mut current = objective(x, labels, l2, &weights, intercept);
    let mut iterations = 0;
    while iterations < MAX_NEWTON_STEPS {
        iterations += 1;
        progress(iterations);
        let (gradient, mut hessian) = gradient_and_hessian(x, labels, l2, &weights, intercept);
        // Converged when the mean per-row gradient is at rounding level.
        if gradient.iter().all(|g| g.abs() <= GRADIENT_TOLERANCE * labels.len().max(1) as f64) {
            break;
        }
        // With l2 > 0 the Hessian is positive definite; the jitter only guards l2 = 0 with a
        // column that never varies.
        let mut step = cholesky_solve(&hessian, &gradient);
        let mut jitter = 1e-10;
        while step.is_none() && jitter < 1e3 {
            for j in 0..=p {
                hessian[j * (p + 1) + j] += jitter;
            }
            jitter *= 100.0;
            step = cholesky_solve(&hessian, &gradient);
        }
        let Some(step) = step else { break };
        let decrement: f64 = gradient.iter().zip(&step).map(|(g, s)| g * s).sum();
        // A non-positive decrement means rounding has taken over: nothing left to gain.
        if decrement.is_nan() || decrement <= 0.0 {
            break;
        }
        // Backtracking (Armijo) line search; the full step is accepted near the optimum.
        let mut size = 1.0;
        let accepted = loop {
            let trial_weights: Vec<f64> = weights.iter().zip(&step).map(|(w, s)| w - size * s).collect();
            let trial_intercept = intercept - size * step[p];
            let trial = objective(x, labels, l2, &trial_weights, trial_intercept);
            if trial <= current - 1e-4 * size * decrement {
                break Some((trial_weights, trial_intercept, trial));
            }
            size *= 0.5;
            if size < 1e-10 {
                break None;
            }
        };
        let Some((new_weights, new_intercept, new_objective)) = accepted else { break };
        weights = new_weights;
        intercept = new_intercept;
        let improvement = current - new_objective;
        current = new_objective;
        if improvement <= 1e-15 * (1.0 + current.abs()) {
            break;
        }
    }
    LogisticFit { intercept, weights, iterations }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn cholesky_solves_a_small_system() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let x = cholesky_solve(&a, &[2.0, 1.0]).unwrap();
        assert!((4.0 * x[0] + 2.0 * x[1] - 2.0).abs() < 1e-12);
        assert!((2.0 * x[0] + 3.0 * x[1] - 1.0).abs() < 1e-12);
        assert!(cholesky_solve(&[1.0, 2.0, 2.0, 1.0], &[1.0, 1.0]).is_none());
    }

    #[test]
    fn recovers_known_weights() {
        let truth = [1.0, -2.0, 0.5];
        let true_intercept = -0.5;
        let mut rng = SplitMix64::new(3);
        let mut x = SparseRows::new(3);
        let mut labels = vec![];
        for _ in 0..20_000 {
            let row: Vec<(u32, f64)> = (0..3).map(|c| (c as u32, rng.normal())).collect();
            let logit = true_intercept + row.iter().map(|&(c, v)| truth[c as usize] * v).sum::<f64>();
            labels.push(rng.next_f64() < sigmoid(logit));
            x.push_row(&row);
        }
        let fit = fit_logistic(&x, &labels, 1.0, &mut |_| {});
        for (learned, true_weight) in fit.weights.iter().zip(truth) {
            assert!((learned - true_weight).abs() < 0.08, "{learned} vs {true_weight}");
        }
        assert!((fit.intercept - true_intercept).abs() < 0.08, "{}", fit.intercept);
        assert!(fit.iterations < 15, "Newton should converge quickly, took {}", fit.iterations);
    }

    #[test]
    fn the_fit_is_a_stationary_point() {
        // At the optimum the penalised gradient vanishes: this is what "solved" means.
        let mut rng = SplitMix64::new(5);
        let mut x = SparseRows::new(4);
        let mut labels = vec![];
        for i in 0..600 {
            let level = (i % 3) as u32;
            let z = rng.normal();
            x.push_row(&[(level, 1.0), (3, z)]);
            labels.push(rng.next_f64() < sigmoid(0.3 * f64::from(level) + z));
        }
        let fit = fit_logistic(&x, &labels, 1.0, &mut |_| {});
        let (gradient, _) = gradient_and_hessian(&x, &labels, 1.0, &fit.weights, fit.intercept);
        assert!(gradient.iter().all(|g| g.abs() < 1e-6), "{gradient:?}");
    }
}
