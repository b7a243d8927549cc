//! Histogram gradient-boosted trees for log loss, in the style of LightGBM and scikit-learn's
//! `HistGradientBoostingClassifier`.
//!
//! - Numeric features are cut into at most `max_bins` bins at quantiles of the training values;
//!   missing values get a bin of their own, and each split learns which side they go to.
//! - Categorical features split natively as in scikit-learn: the node's categories (including
//!   "other" and "missing") with enough support are sorted by gradient / (hessian + 10) and the
//!   best run from either end of that order (at most half of them) goes left.
//! - Trees grow leaf-wise (best gain first) up to `max_leaves`, with at least `min_samples_leaf`
//!   rows per leaf; a child's histogram is its parent's minus its sibling's.
//! - Early stopping and Platt scaling use a stratified validation slice of the training part
//!   that the trees never see. A small training part (under `small_data_rows`) is too small for
//!   one slice: k-fold cross-validation picks the number of trees and gives out-of-fold margins
//!   for Platt scaling, and the model averages a refit on all rows with the k fold models.
//!
//! Every sum runs in a fixed order (rows ascending within a node, features built
//! independently), so results do not depend on how many threads rayon uses.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::metrics::{log_loss, sigmoid};

/// Gradient boosting settings; the defaults follow scikit-learn's
/// `HistGradientBoostingClassifier` except where noted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoostingOptions {
    /// Most trees to grow (scikit-learn: 100); early stopping usually ends sooner.
    pub max_iterations: usize,
    pub learning_rate: f64,
    pub max_leaves: usize,
    pub min_samples_leaf: usize,
    /// L2 penalty on leaf values (scikit-learn's `l2_regularization`).
    pub l2: f64,
    /// Bins per numeric feature, at most 255 (one more is kept for missing values).
    pub max_bins: usize,
    /// Share of the training part held back from the trees for early stopping and for Platt
    /// scaling. 0 turns both off (the raw margin is then used uncalibrated).
    pub validation_fraction: f64,
    /// Stop when the validation log loss has not improved for this many trees, and keep the
    /// best number of trees. `None` grows all `max_iterations`.
    pub early_stopping_rounds: Option<usize>,
    /// A training part with fewer rows than this is too small for one validation slice to
    /// pick the number of trees or calibrate reliably: `small_data_folds`-fold
    /// cross-validation does both instead (see `fit_boosted_folds`) and the final trees learn
    /// from every training row. Needs early stopping and a validation fraction above 0.
    #[serde(default = "default_small_data_rows")]
    pub small_data_rows: usize,
    /// Folds for small training parts; below 2 turns cross-validation off. Three steady
    /// the boosted AUC across seeds on small data sets as well as five did, and train
    /// and score about half as many trees (BENCHMARKS.md has both).
    #[serde(default = "default_small_data_folds")]
    pub small_data_folds: usize,
}

fn default_small_data_rows() -> usize {
    20_000
}

fn default_small_data_folds() -> usize {
    3
}

impl Default for BoostingOptions {
    fn default() -> Self {
        BoostingOptions {
            max_iterations: 200,
            learning_rate: 0.1,
            max_leaves: 31,
            min_samples_leaf: 20,
            l2: 0.0,
            max_bins: 255,
            validation_fraction: 0.1,
            early_stopping_rounds: Some(10),
            small_data_rows: default_small_data_rows(),
            small_data_folds: default_small_data_folds(),
        }
    }
}

/// How a split sends a row left (the stored form; see [`Tree`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum SplitRule {
    /// Left when `value <= threshold`; missing values go left when `missing_left`.
    Numeric { threshold: f64, missing_left: bool },
    /// Left when the category code's bit is set (codes: levels, then other, then missing).
    Categorical { left: Vec<u64> },
}

/// A split as stored in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Split {
    /// Index of the original feature (into the model's feature list).
    pub feature: usize,
    pub rule: SplitRule,
    pub left: u32,
    pub right: u32,
}

/// A tree node as stored in JSON. Every node, not only leaves, carries the (shrunken) value it
/// would predict as a leaf: the per-split explanation is the change in this value along the
/// decision path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Node {
    pub value: f64,
    pub split: Option<Split>,
}

/// A tree as stored in JSON: the nodes, the root first, each split's children after it and
/// next to each other (right = left + 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredTree {
    pub nodes: Vec<Node>,
}

impl StoredTree {
    /// The leaf value for one row of inputs (one f64 per feature: the number, NaN when
    /// missing, or the category code). Training scores its validation rows with this; scoring
    /// uses the [`BoostedModel`]'s own layout.
    pub(crate) fn leaf_value(&self, inputs: &[f64]) -> f64 {
        let mut node = &self.nodes[0];
        while let Some(split) = &node.split {
            let input = inputs[split.feature];
            let left = match &split.rule {
                SplitRule::Numeric { threshold, missing_left } => {
                    if input.is_nan() {
                        *missing_left
                    } else {
                        input <= *threshold
                    }
                }
                SplitRule::Categorical { left } => {
                    let code = input as usize;
                    left.get(code / 64).is_some_and(|word| word >> (code % 64) & 1 == 1)
                }
            };
            node = &self.nodes[if left { split.left } else { split.right } as usize];
        }
        node.value
    }
}

/// The ensemble as stored in JSON (the same shape as in the first version of this crate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredModel {
    pub init: f64,
    pub trees: Vec<StoredTree>,
    pub platt_scale: f64,
    pub platt_shift: f64,
}

// Scoring layout.
//
// A row is encoded once into integer *slots*, two per feature: for a numeric feature, its rank
// among the thresholds the trees compare that feature with (the number of thresholds below the
// value), the missing value counting as above everything in the first slot and below
// everything in the second; for a categorical feature, its category code. A numeric split on
// the k-th threshold sends a row left when its rank is at most k (x ≤ t_k exactly when fewer
// than k + 1 thresholds lie below x), reading the slot that puts missing values on the side the
// split learned. So every split is one integer comparison or one bit test.

/// Node kinds, in the top two bits of [`FlatNode::slot`].
const COMPARE: u32 = 0;
/// Category codes below 64: the left set is the word in `data`.
const CATEGORY_WORD: u32 = 1;
/// Larger codes: the left set is `words[start..start + len]`, with `data` = start | len << 32.
const CATEGORY_WORDS: u32 = 2;
const KIND_SHIFT: u32 = 30;
const SLOT_MASK: u32 = (1 << KIND_SHIFT) - 1;
/// A missing number in the slot that sends missing values right.
const MISSING_HIGH: u32 = u32::MAX;
/// ... and in the one that sends them left.
const MISSING_LOW: u32 = 0;

/// One node of the scoring layout: 16 bytes, four to a cache line.
///
/// A split's children are `left` and `left + 1`, both after it. A leaf is its own left child
/// and a comparison that every slot value passes, so a walk can step without asking whether it
/// has arrived: at a leaf it stays put.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FlatNode {
    /// Comparison: left when the slot value is at most this. Categorical: see the kinds.
    data: u64,
    /// The slot (2 × feature, + 1 for the missing-low one), with the kind in the top two bits.
    slot: u32,
    left: u32,
}

impl FlatNode {
    const fn leaf(index: u32) -> FlatNode {
        FlatNode { data: u64::MAX, slot: COMPARE << KIND_SHIFT, left: index }
    }

    fn feature(&self) -> usize {
        ((self.slot & SLOT_MASK) >> 1) as usize
    }

    /// The next node for this row (the node itself at a leaf), with no branch on the data
    /// except for categorical splits with codes past 63.
    #[inline(always)]
    fn next(&self, slots: &[u32], words: &[u64]) -> usize {
        let value = u64::from(slots[(self.slot & SLOT_MASK) as usize]);
        let kind = self.slot >> KIND_SHIFT;
        let left = if kind == CATEGORY_WORDS {
            let (start, len) = ((self.data & 0xFFFF_FFFF) as usize, (self.data >> 32) as usize);
            let word = (value / 64) as usize;
            word < len && words[start + word] >> (value % 64) & 1 == 1
        } else {
            let compare_left = value <= self.data;
            let category_left = (value < 64) & (self.data >> (value & 63) & 1 == 1);
            if kind == CATEGORY_WORD { category_left } else { compare_left }
        };
        self.left as usize + usize::from(!left)
    }
}

/// A tree in the scoring layout: 16-byte nodes, the node values beside them (leaf values, and
/// the internal ones for explanations), and the bit sets of categorical splits with codes past
/// 63 in one pool.
#[derive(Debug, Clone, PartialEq)]
struct Tree {
    nodes: Vec<FlatNode>,
    values: Vec<f64>,
    /// Per node: its value minus its parent's, and the parent's split feature ((0, 0) for the
    /// root), so the path attribution reads one entry per step.
    credits: Vec<(f64, u32)>,
    words: Vec<u64>,
    /// The longest root-to-leaf path, in splits.
    depth: usize,
}

impl Tree {
    fn leaf(&self, slots: &[u32]) -> usize {
        let mut index = 0;
        loop {
            let next = self.nodes[index].next(slots, &self.words);
            if next == index {
                return index;
            }
            index = next;
        }
    }

    /// Saabas path attribution: walks the decision path and credits each split's change in
    /// node value to the split's feature. Returns the root value; root + credits = leaf value.
    fn attribute(&self, slots: &[u32], scale: f64, contributions: &mut [f64]) -> f64 {
        let mut index = 0;
        loop {
            let node = &self.nodes[index];
            let next = node.next(slots, &self.words);
            if next == index {
                return self.values[0];
            }
            contributions[node.feature()] += scale * (self.values[next] - self.values[index]);
            index = next;
        }
    }
}

/// How the trees read one feature.
#[derive(Debug, Clone, PartialEq)]
enum FeatureUse {
    Unused,
    /// The distinct thresholds of its splits, ascending.
    Numeric(Vec<f64>),
    Categorical,
}

/// Trees walked side by side for one row: independent walks the processor can overlap.
const LANES: usize = 4;
/// Splits per path the side-by-side attribution keeps on the stack; deeper groups (only with a
/// very large `max_leaves`) are walked one tree at a time.
const PATH_CAPACITY: usize = 32;
/// Slots kept on the stack; wider models use the heap.
const STACK_SLOTS: usize = 128;

/// Walks `LANES` trees together until every walk has reached its leaf; `visit` hears each
/// step's node indices (a walk at its leaf repeats it).
#[inline(always)]
fn walk_together(trees: &[Tree], slots: &[u32], mut visit: impl FnMut(usize, &[usize; LANES])) -> [usize; LANES] {
    let mut at = [0usize; LANES];
    let mut step = 0;
    loop {
        let mut moved = false;
        for (lane, tree) in trees.iter().enumerate().take(LANES) {
            let next = tree.nodes[at[lane]].next(slots, &tree.words);
            moved |= next != at[lane];
            at[lane] = next;
        }
        if !moved {
            return at;
        }
        visit(step, &at);
        step += 1;
    }
}

/// The trained ensemble, with the Platt scaling folded in: logit = scale · raw + shift, where
/// raw = init + Σ tree leaf values. Stored as [`StoredModel`]; reading it back builds the
/// scoring layout and checks the structure, so a walk always ends and never indexes out of
/// bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredModel", into = "StoredModel")]
pub(crate) struct BoostedModel {
    init: f64,
    platt_scale: f64,
    platt_shift: f64,
    trees: Vec<Tree>,
    /// One per feature up to the last one a split reads (at least one).
    features: Vec<FeatureUse>,
}

impl TryFrom<StoredModel> for BoostedModel {
    type Error = String;

    fn try_from(stored: StoredModel) -> Result<Self, String> {
        // Which features are read, and how.
        let mut features: Vec<FeatureUse> = vec![FeatureUse::Unused];
        for (number, tree) in stored.trees.iter().enumerate() {
            for split in tree.nodes.iter().filter_map(|node| node.split.as_ref()) {
                if split.feature >= (SLOT_MASK >> 1) as usize {
                    return Err(format!("tree {number}: feature index {} is too large", split.feature));
                }
                if features.len() <= split.feature {
                    features.resize(split.feature + 1, FeatureUse::Unused);
                }
                let usage = &mut features[split.feature];
                match (&split.rule, &mut *usage) {
                    (SplitRule::Numeric { threshold, .. }, FeatureUse::Numeric(thresholds)) => thresholds.push(*threshold),
                    (SplitRule::Numeric { threshold, .. }, FeatureUse::Unused) => *usage = FeatureUse::Numeric(vec![*threshold]),
                    (SplitRule::Categorical { .. }, FeatureUse::Categorical) => {}
                    (SplitRule::Categorical { .. }, FeatureUse::Unused) => *usage = FeatureUse::Categorical,
                    _ => return Err(format!("tree {number}: feature {} is split both as a number and as a category", split.feature)),
                }
            }
        }
        for usage in &mut features {
            if let FeatureUse::Numeric(thresholds) = usage {
                if thresholds.iter().any(|t| t.is_nan()) {
                    return Err("a threshold is not a number".to_string());
                }
                // By bits, so every stored threshold is found again exactly (0.0 and -0.0 too).
                thresholds.sort_by(f64::total_cmp);
                thresholds.dedup_by(|a, b| a.to_bits() == b.to_bits());
            }
        }
        let mut trees = Vec::with_capacity(stored.trees.len());
        for (number, tree) in stored.trees.iter().enumerate() {
            let count = tree.nodes.len();
            if count == 0 || count >= u32::MAX as usize {
                return Err(format!("tree {number} must have between 1 and {} nodes, not {count}", u32::MAX - 1));
            }
            let mut nodes = Vec::with_capacity(count);
            let mut words = Vec::new();
            let mut depths = vec![0usize; count];
            for (index, node) in tree.nodes.iter().enumerate() {
                let Some(split) = &node.split else {
                    nodes.push(FlatNode::leaf(index as u32));
                    continue;
                };
                let (left, right) = (split.left as usize, split.right as usize);
                if left <= index || right != left + 1 || right >= count {
                    return Err(format!("tree {number}, node {index}: children {left} and {right} must follow it, next to each other, within {count} nodes"));
                }
                depths[left] = depths[index] + 1;
                depths[right] = depths[index] + 1;
                let slot = 2 * split.feature as u32;
                let (slot, data) = match (&split.rule, &features[split.feature]) {
                    (SplitRule::Numeric { threshold, missing_left }, FeatureUse::Numeric(thresholds)) => {
                        let rank = thresholds.partition_point(|t| t.total_cmp(threshold).is_lt());
                        ((slot + u32::from(*missing_left)) | (COMPARE << KIND_SHIFT), rank as u64)
                    }
                    (SplitRule::Categorical { left }, _) if left.len() == 1 => (slot | CATEGORY_WORD << KIND_SHIFT, left[0]),
                    (SplitRule::Categorical { left }, _) => {
                        let start = words.len() as u64;
                        words.extend_from_slice(left);
                        if words.len() > u32::MAX as usize {
                            return Err(format!("tree {number} has too many categorical splits"));
                        }
                        (slot | CATEGORY_WORDS << KIND_SHIFT, start | (left.len() as u64) << 32)
                    }
                    _ => unreachable!("feature uses were gathered from these splits"),
                };
                nodes.push(FlatNode { data, slot, left: left as u32 });
            }
            let values: Vec<f64> = tree.nodes.iter().map(|node| node.value).collect();
            // What reaching each node credits to its parent's feature (the root: nothing).
            let mut credits = vec![(0.0, 0u32); count];
            for (index, node) in tree.nodes.iter().enumerate() {
                if let Some(split) = &node.split {
                    for child in [split.left as usize, split.right as usize] {
                        credits[child] = (values[child] - values[index], split.feature as u32);
                    }
                }
            }
            let depth = depths.into_iter().max().unwrap_or(0);
            trees.push(Tree { nodes, values, credits, words, depth });
        }
        Ok(BoostedModel { init: stored.init, platt_scale: stored.platt_scale, platt_shift: stored.platt_shift, trees, features })
    }
}

impl From<BoostedModel> for StoredModel {
    fn from(model: BoostedModel) -> StoredModel {
        let trees = model
            .trees
            .iter()
            .map(|tree| {
                let nodes = tree
                    .nodes
                    .iter()
                    .zip(&tree.values)
                    .enumerate()
                    .map(|(index, (node, &value))| {
                        if node.left as usize == index {
                            return Node { value, split: None };
                        }
                        let feature = node.feature();
                        let rule = match (node.slot >> KIND_SHIFT, &model.features[feature]) {
                            (COMPARE, FeatureUse::Numeric(thresholds)) => {
                                SplitRule::Numeric { threshold: thresholds[node.data as usize], missing_left: node.slot & 1 == 1 }
                            }
                            (CATEGORY_WORD, _) => SplitRule::Categorical { left: vec![node.data] },
                            _ => {
                                let (start, len) = ((node.data & 0xFFFF_FFFF) as usize, (node.data >> 32) as usize);
                                SplitRule::Categorical { left: tree.words[start..start + len].to_vec() }
                            }
                        };
                        Node { value, split: Some(Split { feature, rule, left: node.left, right: node.left + 1 }) }
                    })
                    .collect();
                StoredTree { nodes }
            })
            .collect();
        StoredModel { init: model.init, trees, platt_scale: model.platt_scale, platt_shift: model.platt_shift }
    }
}

impl BoostedModel {
    pub(crate) fn new(init: f64, trees: Vec<StoredTree>, platt_scale: f64, platt_shift: f64) -> BoostedModel {
        BoostedModel::try_from(StoredModel { init, trees, platt_scale, platt_shift }).expect("grown trees are well formed")
    }

    pub(crate) fn tree_count(&self) -> usize {
        self.trees.len()
    }

    /// One more than the largest feature index a split reads (0 when no tree splits).
    pub(crate) fn features_read(&self) -> usize {
        self.features.iter().rposition(|usage| *usage != FeatureUse::Unused).map_or(0, |last| last + 1)
    }

    #[cfg(test)]
    fn node_count(&self, tree: usize) -> usize {
        self.trees[tree].nodes.len()
    }

    /// Encodes a row's tree inputs (one f64 per feature: the number, NaN when missing, or the
    /// category code; features past the end count as missing) into slots on the stack, and
    /// hands them to `score`.
    fn with_slots<R>(&self, inputs: &[f64], score: impl FnOnce(&[u32]) -> R) -> R {
        let fill = |slots: &mut [u32]| {
            for (feature, usage) in self.features.iter().enumerate() {
                let input = inputs.get(feature).copied().unwrap_or(f64::NAN);
                let (high, low) = match usage {
                    FeatureUse::Unused => (0, 0),
                    FeatureUse::Categorical => {
                        // `as` saturates: NaN (never a code) reads 0, which the split tests like any code.
                        let code = input as u32;
                        (code, code)
                    }
                    FeatureUse::Numeric(_) if input.is_nan() => (MISSING_HIGH, MISSING_LOW),
                    FeatureUse::Numeric(thresholds) => {
                        let rank = thresholds.partition_point(|t| *t < input) as u32;
                        (rank, rank)
                    }
                };
                slots[2 * feature] = high;
                slots[2 * feature + 1] = low;
            }
        };
        let width = 2 * self.features.len();
        if width <= STACK_SLOTS {
            let mut slots = [0u32; STACK_SLOTS];
            fill(&mut slots[..width]);
            score(&slots[..width])
        } else {
            let mut slots = vec![0u32; width];
            fill(&mut slots);
            score(&slots)
        }
    }

    /// init + Σ leaf values, added in tree order.
    fn raw(&self, slots: &[u32]) -> f64 {
        let mut raw = self.init;
        let mut groups = self.trees.chunks_exact(LANES);
        for group in &mut groups {
            let leaves = walk_together(group, slots, |_, _| {});
            for (tree, leaf) in group.iter().zip(leaves) {
                raw += tree.values[leaf];
            }
        }
        groups.remainder().iter().fold(raw, |sum, tree| sum + tree.values[tree.leaf(slots)])
    }

    pub(crate) fn logit(&self, inputs: &[f64]) -> f64 {
        self.with_slots(inputs, |slots| self.platt_scale * self.raw(slots) + self.platt_shift)
    }

    /// Per-feature contributions (scaled by Platt's slope) and the intercept they add to.
    /// The same sums in the same order as one tree at a time, so the same bits.
    /// `contributions` needs one place per feature the trees read.
    pub(crate) fn explain(&self, inputs: &[f64], contributions: &mut [f64]) -> f64 {
        self.with_slots(inputs, |slots| self.explain_slots(slots, contributions))
    }

    fn explain_slots(&self, slots: &[u32], contributions: &mut [f64]) -> f64 {
        let scale = self.platt_scale;
        let mut roots = self.init;
        let mut groups = self.trees.chunks_exact(LANES);
        // Written before read in every group: set up once.
        let mut paths = [[0u32; PATH_CAPACITY]; LANES];
        for group in &mut groups {
            if group.iter().any(|tree| tree.depth > PATH_CAPACITY) {
                for tree in group {
                    roots += tree.attribute(slots, scale, contributions);
                }
                continue;
            }
            let mut steps = 0;
            let mut last = [0usize; LANES];
            walk_together(group, slots, |step, at| {
                // A walk that has reached its leaf records the root, whose credit is +0 (to
                // feature 0: no change, and no branch to guess).
                for ((path, &node), previous) in paths.iter_mut().zip(at).zip(&mut last) {
                    path[step] = if node != *previous { node as u32 } else { 0 };
                    *previous = node;
                }
                steps = step + 1;
            });
            for (tree, path) in group.iter().zip(&paths) {
                for &node in &path[..steps] {
                    let (credit, feature) = tree.credits[node as usize];
                    contributions[feature as usize] += scale * credit;
                }
                roots += tree.values[0];
            }
        }
        for tree in groups.remainder() {
            roots += tree.attribute(slots, scale, contributions);
        }
        self.platt_shift + scale * roots
    }
}

/// One training input column as the trees see it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ColumnKind {
    Numeric,
    /// Category codes 0..count (levels, other, missing).
    Categorical {
        count: usize,
    },
}

/// What `fit_boosted` needs: row-major inputs (one f64 per original feature per row; numbers
/// with NaN for missing, or category codes) for the tree rows and the validation rows.
pub(crate) struct BoostingData<'a> {
    pub width: usize,
    /// (original feature index, kind) of every feature the trees may split on.
    pub columns: Vec<(usize, ColumnKind)>,
    pub train_inputs: &'a [f64],
    pub train_labels: &'a [bool],
    pub validation_inputs: &'a [f64],
    pub validation_labels: &'a [bool],
}

impl<'a> BoostingData<'a> {
    /// Training rows with no validation part (a refit of a known number of trees).
    pub(crate) fn without_validation(width: usize, columns: Vec<(usize, ColumnKind)>, train_inputs: &'a [f64], train_labels: &'a [bool]) -> Self {
        BoostingData { width, columns, train_inputs, train_labels, validation_inputs: &[], validation_labels: &[] }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct BinStats {
    gradient: f64,
    hessian: f64,
    count: u32,
}

type Histogram = Vec<Vec<BinStats>>;

/// A feature binned for the tree rows.
struct BinnedColumn {
    feature: usize,
    bins: Vec<u8>,
    /// Numeric: the upper edges of the non-missing bins (bin = number of edges below the
    /// value); the missing bin is `edges.len() + 1`. Categorical: `None`.
    edges: Option<Vec<f64>>,
    bin_count: usize,
}

impl BinnedColumn {
    fn missing_bin(&self) -> Option<usize> {
        self.edges.as_ref().map(|edges| edges.len() + 1)
    }
}

fn numeric_edges(mut values: Vec<f64>, max_bins: usize) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    let mut distinct = values.clone();
    distinct.dedup();
    if distinct.len() <= max_bins {
        return distinct.windows(2).map(|pair| pair[0] + (pair[1] - pair[0]) / 2.0).collect();
    }
    let n = values.len();
    let mut edges: Vec<f64> = (1..max_bins)
        .map(|k| {
            let index = (k * n / max_bins).clamp(1, n - 1);
            values[index - 1] + (values[index] - values[index - 1]) / 2.0
        })
        .collect();
    edges.dedup();
    edges
}

fn bin_columns(data: &BoostingData, max_bins: usize) -> Vec<BinnedColumn> {
    let rows = data.train_labels.len();
    data.columns
        .par_iter()
        .map(|(feature, kind)| {
            let input = |row: usize| data.train_inputs[row * data.width + feature];
            match kind {
                ColumnKind::Numeric => {
                    let values: Vec<f64> = (0..rows).map(input).filter(|x| !x.is_nan()).collect();
                    let edges = numeric_edges(values, max_bins);
                    let missing = (edges.len() + 1) as u8;
                    let bins = (0..rows)
                        .map(|row| {
                            let x = input(row);
                            if x.is_nan() { missing } else { edges.partition_point(|edge| *edge < x) as u8 }
                        })
                        .collect();
                    let bin_count = edges.len() + 2;
                    BinnedColumn { feature: *feature, bins, edges: Some(edges), bin_count }
                }
                ColumnKind::Categorical { count } => {
                    let bins = (0..rows).map(|row| input(row) as u8).collect();
                    BinnedColumn { feature: *feature, bins, edges: None, bin_count: *count }
                }
            }
        })
        .collect()
}

/// Rows × features below which building histograms in parallel costs more than it saves.
const PARALLEL_WORK: usize = 40_000;

fn build_histogram(columns: &[BinnedColumn], rows: &[u32], gradients: &[f64], hessians: &[f64]) -> Histogram {
    // The node's gradients gathered once, in row order, so each column reads them in sequence
    // and only its bins by row.
    let ordered: Vec<(f64, f64)> = rows.iter().map(|&row| (gradients[row as usize], hessians[row as usize])).collect();
    let build = |column: &BinnedColumn| {
        let mut histogram = vec![BinStats::default(); column.bin_count];
        for (&row, &(gradient, hessian)) in rows.iter().zip(&ordered) {
            let stats = &mut histogram[column.bins[row as usize] as usize];
            stats.gradient += gradient;
            stats.hessian += hessian;
            stats.count += 1;
        }
        histogram
    };
    if rows.len() * columns.len() >= PARALLEL_WORK { columns.par_iter().map(build).collect() } else { columns.iter().map(build).collect() }
}

fn subtract(parent: &Histogram, child: &Histogram) -> Histogram {
    parent
        .iter()
        .zip(child)
        .map(|(parent, child)| {
            parent
                .iter()
                .zip(child)
                .map(|(p, c)| {
                    let count = p.count - c.count;
                    // An empty bin is exactly zero, not the rounding residue of a subtraction.
                    if count == 0 { BinStats::default() } else { BinStats { gradient: p.gradient - c.gradient, hessian: p.hessian - c.hessian, count } }
                })
                .collect()
        })
        .collect()
}

#[derive(Debug, Clone)]
enum CandidateRule {
    /// Left: bins 0..=threshold_bin (plus the missing bin when `missing_left`).
    Numeric {
        threshold_bin: usize,
        missing_left: bool,
    },
    Categorical {
        left: [u64; 4],
    },
}

#[derive(Debug, Clone)]
struct Candidate {
    gain: f64,
    column: usize,
    rule: CandidateRule,
}

#[derive(Debug, Clone, Copy)]
struct Totals {
    gradient: f64,
    hessian: f64,
    count: usize,
}

struct SplitSettings {
    l2: f64,
    min_samples_leaf: usize,
}

/// Categories need this much hessian before their ratio is trusted when ordering them
/// (scikit-learn's MIN_CAT_SUPPORT, LightGBM's cat_smooth).
const CATEGORY_SMOOTHING: f64 = 10.0;
const MIN_HESSIAN: f64 = 1e-3;

fn score(gradient: f64, hessian: f64, l2: f64) -> f64 {
    gradient * gradient / (hessian + l2)
}

fn best_split(columns: &[BinnedColumn], histogram: &Histogram, totals: Totals, settings: &SplitSettings) -> Option<Candidate> {
    if totals.count < 2 * settings.min_samples_leaf {
        return None;
    }
    let parent_score = score(totals.gradient, totals.hessian, settings.l2);
    let mut best: Option<Candidate> = None;
    let mut consider = |gain: f64, column: usize, rule: CandidateRule| {
        if gain > 1e-9 && best.as_ref().is_none_or(|b| gain > b.gain) {
            best = Some(Candidate { gain, column, rule });
        }
    };
    let admissible = |left: (f64, f64, usize)| {
        let right = (totals.gradient - left.0, totals.hessian - left.1, totals.count - left.2);
        let ok = left.2 >= settings.min_samples_leaf && right.2 >= settings.min_samples_leaf && left.1 >= MIN_HESSIAN && right.1 >= MIN_HESSIAN;
        ok.then(|| score(left.0, left.1, settings.l2) + score(right.0, right.1, settings.l2) - parent_score)
    };
    for (index, (column, bins)) in columns.iter().zip(histogram).enumerate() {
        match column.missing_bin() {
            Some(missing_bin) => {
                let missing = bins[missing_bin];
                let has_missing = missing.count > 0;
                let (mut g, mut h, mut n) = (0.0, 0.0, 0usize);
                // Missing right: thresholds up to the last non-missing bin; the last one
                // (all numbers left, missing right) only when there are missing rows.
                let last = if has_missing { missing_bin - 1 } else { missing_bin.saturating_sub(2) };
                for (threshold_bin, stats) in bins[..missing_bin].iter().enumerate() {
                    if threshold_bin > last {
                        break;
                    }
                    g += stats.gradient;
                    h += stats.hessian;
                    n += stats.count as usize;
                    if stats.count == 0 {
                        continue;
                    }
                    if let Some(gain) = admissible((g, h, n)) {
                        // With no missing rows here, unseen missing values follow the majority.
                        let missing_left = !has_missing && n >= totals.count - n;
                        consider(gain, index, CandidateRule::Numeric { threshold_bin, missing_left });
                    }
                }
                if has_missing {
                    let (mut g, mut h, mut n) = (missing.gradient, missing.hessian, missing.count as usize);
                    for (threshold_bin, stats) in bins[..missing_bin - 1].iter().enumerate() {
                        g += stats.gradient;
                        h += stats.hessian;
                        n += stats.count as usize;
                        if stats.count == 0 {
                            continue;
                        }
                        if let Some(gain) = admissible((g, h, n)) {
                            consider(gain, index, CandidateRule::Numeric { threshold_bin, missing_left: true });
                        }
                    }
                }
            }
            None => {
                // As in scikit-learn: categories with too little support (hessian scaled to a
                // sample count) never define a split and always go right; the rest are ordered
                // by smoothed gradient/hessian and scanned from both ends up to the middle, so
                // the left child never holds more than half of them.
                let support_factor = totals.count as f64 / totals.hessian;
                let mut supported: Vec<usize> =
                    (0..bins.len()).filter(|&code| bins[code].count > 0 && bins[code].hessian * support_factor >= CATEGORY_SMOOTHING).collect();
                if supported.len() < 2 {
                    continue;
                }
                let ratio = |code: usize| bins[code].gradient / (bins[code].hessian + CATEGORY_SMOOTHING);
                supported.sort_by(|&a, &b| ratio(a).total_cmp(&ratio(b)).then(a.cmp(&b)));
                let half = supported.len().div_ceil(2);
                let ascending = supported.iter().take(half);
                let descending = supported.iter().rev().take(half - 1);
                for direction in [ascending.copied().collect::<Vec<usize>>(), descending.copied().collect()] {
                    let (mut g, mut h, mut n) = (0.0, 0.0, 0usize);
                    let mut left = [0u64; 4];
                    for code in direction {
                        g += bins[code].gradient;
                        h += bins[code].hessian;
                        n += bins[code].count as usize;
                        left[code / 64] |= 1 << (code % 64);
                        if let Some(gain) = admissible((g, h, n)) {
                            consider(gain, index, CandidateRule::Categorical { left });
                        }
                    }
                }
            }
        }
    }
    best
}

fn goes_left(column: &BinnedColumn, rule: &CandidateRule, bin: u8) -> bool {
    let bin = bin as usize;
    match rule {
        CandidateRule::Numeric { threshold_bin, missing_left } => {
            if Some(bin) == column.missing_bin() {
                *missing_left
            } else {
                bin <= *threshold_bin
            }
        }
        CandidateRule::Categorical { left } => left[bin / 64] >> (bin % 64) & 1 == 1,
    }
}

fn model_rule(column: &BinnedColumn, rule: &CandidateRule) -> SplitRule {
    match rule {
        CandidateRule::Numeric { threshold_bin, missing_left } => {
            let edges = column.edges.as_deref().unwrap_or(&[]);
            // Past the last edge means "every number": f64::MAX rather than infinity, which JSON
            // cannot carry.
            let threshold = edges.get(*threshold_bin).copied().unwrap_or(f64::MAX);
            SplitRule::Numeric { threshold, missing_left: *missing_left }
        }
        CandidateRule::Categorical { left } => {
            let mut words = left.to_vec();
            while words.last() == Some(&0) {
                words.pop();
            }
            SplitRule::Categorical { left: words }
        }
    }
}

struct OpenLeaf {
    node: usize,
    rows: Vec<u32>,
    histogram: Histogram,
    best: Option<Candidate>,
}

fn totals_of(rows: &[u32], gradients: &[f64], hessians: &[f64]) -> Totals {
    let mut totals = Totals { gradient: 0.0, hessian: 0.0, count: rows.len() };
    for &row in rows {
        totals.gradient += gradients[row as usize];
        totals.hessian += hessians[row as usize];
    }
    totals
}

fn leaf_value(totals: Totals, options: &BoostingOptions) -> f64 {
    let denominator = totals.hessian + options.l2;
    if denominator > 1e-12 { -options.learning_rate * totals.gradient / denominator } else { 0.0 }
}

/// Grows one tree on the gradients; returns it and, for every training row, its leaf value.
fn grow_tree(columns: &[BinnedColumn], gradients: &[f64], hessians: &[f64], options: &BoostingOptions) -> (StoredTree, Vec<f64>) {
    let settings = SplitSettings { l2: options.l2, min_samples_leaf: options.min_samples_leaf.max(1) };
    let all_rows: Vec<u32> = (0..gradients.len() as u32).collect();
    let histogram = build_histogram(columns, &all_rows, gradients, hessians);
    let totals = totals_of(&all_rows, gradients, hessians);
    let best = best_split(columns, &histogram, totals, &settings);
    let mut nodes = vec![Node { value: leaf_value(totals, options), split: None }];
    let mut open = vec![OpenLeaf { node: 0, rows: all_rows, histogram, best }];
    let mut leaves = 1;
    while leaves < options.max_leaves.max(2) {
        // The open leaf with the largest gain; ties go to the earliest (a fixed order).
        let mut chosen: Option<(usize, f64)> = None;
        for (index, leaf) in open.iter().enumerate() {
            if let Some(candidate) = &leaf.best
                && chosen.is_none_or(|(_, gain)| candidate.gain > gain)
            {
                chosen = Some((index, candidate.gain));
            }
        }
        let Some((index, _)) = chosen else { break };
        let leaf = open.remove(index);
        let Some(candidate) = leaf.best else { break };
        let column = &columns[candidate.column];
        let (left_rows, right_rows): (Vec<u32>, Vec<u32>) = leaf.rows.iter().partition(|&&row| goes_left(column, &candidate.rule, column.bins[row as usize]));
        let (small_rows, large_rows, small_is_left) =
            if left_rows.len() <= right_rows.len() { (left_rows, right_rows, true) } else { (right_rows, left_rows, false) };
        let small_histogram = build_histogram(columns, &small_rows, gradients, hessians);
        let large_histogram = subtract(&leaf.histogram, &small_histogram);
        let mut children = [(small_rows, small_histogram), (large_rows, large_histogram)];
        if !small_is_left {
            children.swap(0, 1);
        }
        let left_node = nodes.len();
        let mut child_leaves = Vec::with_capacity(2);
        for (offset, (rows, histogram)) in children.into_iter().enumerate() {
            let totals = totals_of(&rows, gradients, hessians);
            nodes.push(Node { value: leaf_value(totals, options), split: None });
            let best = best_split(columns, &histogram, totals, &settings);
            child_leaves.push(OpenLeaf { node: left_node + offset, rows, histogram, best });
        }
        nodes[leaf.node].split =
            Some(Split { feature: column.feature, rule: model_rule(column, &candidate.rule), left: left_node as u32, right: left_node as u32 + 1 });
        open.extend(child_leaves);
        leaves += 1;
    }
    let mut row_values = vec![0.0; gradients.len()];
    for leaf in &open {
        let value = nodes[leaf.node].value;
        for &row in &leaf.rows {
            row_values[row as usize] = value;
        }
    }
    (StoredTree { nodes }, row_values)
}

/// Fits Platt scaling, p = sigmoid(a · raw + b), by Newton's method on the log loss. Falls
/// back to the identity when the fit is degenerate (a non-positive slope would reverse the
/// trees' ranking, which only happens when they learned nothing).
pub(crate) fn fit_platt(raw: &[f64], labels: &[bool]) -> (f64, f64) {
    let (mut a, mut b) = (1.0, 0.0);
    let loss = |a: f64, b: f64| -> f64 {
        raw.iter()
            .zip(labels)
            .map(|(&x, &y)| {
                let eta = a * x + b;
                eta.max(0.0) + (-eta.abs()).exp().ln_1p() - if y { eta } else { 0.0 }
            })
            .sum::<f64>()
    };
    let mut current = loss(a, b);
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
        for (&x, &y) in raw.iter().zip(labels) {
            let p = sigmoid(a * x + b);
            let r = p - f64::from(u8::from(y));
            let w = p * (1.0 - p);
            ga += r * x;
            gb += r;
            haa += w * x * x;
            hab += w * x;
            hbb += w;
        }
        let determinant = haa * hbb - hab * hab;
        if determinant <= 0.0 {
            break;
        }
        let step_a = (hbb * ga - hab * gb) / determinant;
        let step_b = (haa * gb - hab * ga) / determinant;
        let mut size = 1.0;
        let mut improved = false;
        while size > 1e-10 {
            let trial = loss(a - size * step_a, b - size * step_b);
            if trial <= current {
                a -= size * step_a;
                b -= size * step_b;
                improved = current - trial > 1e-12 * (1.0 + current);
                current = trial;
                break;
            }
            size *= 0.5;
        }
        if !improved {
            break;
        }
    }
    if a > 0.0 && a.is_finite() && b.is_finite() { (a, b) } else { (1.0, 0.0) }
}

/// Trees grown with early stopping, and the validation rows' margins with them.
struct Ensemble {
    init: f64,
    trees: Vec<StoredTree>,
    validation_raw: Vec<f64>,
}

/// Grows trees on `data`'s tree rows; with validation rows, keeps the number of trees with the
/// best validation log loss (stopping `early_stopping_rounds` after it).
fn grow_ensemble(data: &BoostingData, options: &BoostingOptions, progress: &mut dyn FnMut(usize, usize)) -> Ensemble {
    let labels = data.train_labels;
    let rows = labels.len();
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let rate = (positives / rows.max(1) as f64).clamp(1e-6, 1.0 - 1e-6);
    let init = (rate / (1.0 - rate)).ln();
    let columns = bin_columns(data, options.max_bins.clamp(2, 255));

    let validation_rows = data.validation_labels.len();
    let mut raw = vec![init; rows];
    let mut validation_raw = vec![init; validation_rows];
    let mut gradients = vec![0.0; rows];
    let mut hessians = vec![0.0; rows];
    let mut trees = Vec::new();
    let mut best_loss = f64::INFINITY;
    let mut best_trees = 0;
    let validation_probability = |raw: &[f64]| raw.iter().map(|&x| sigmoid(x)).collect::<Vec<f64>>();
    for iteration in 0..options.max_iterations {
        for row in 0..rows {
            let p = sigmoid(raw[row]);
            gradients[row] = p - f64::from(u8::from(labels[row]));
            hessians[row] = p * (1.0 - p);
        }
        let (tree, row_values) = grow_tree(&columns, &gradients, &hessians, options);
        for (raw, value) in raw.iter_mut().zip(&row_values) {
            *raw += value;
        }
        for (row, raw) in validation_raw.iter_mut().enumerate() {
            *raw += tree.leaf_value(&data.validation_inputs[row * data.width..(row + 1) * data.width]);
        }
        let single_leaf = tree.nodes.len() == 1;
        trees.push(tree);
        progress(iteration + 1, options.max_iterations);
        if single_leaf {
            // No split passed the constraints: further trees would all be this one.
            best_trees = trees.len();
            break;
        }
        if validation_rows > 0 {
            let loss = log_loss(&validation_probability(&validation_raw), data.validation_labels);
            if loss < best_loss - 1e-7 {
                best_loss = loss;
                best_trees = trees.len();
            } else if let Some(rounds) = options.early_stopping_rounds
                && trees.len() - best_trees >= rounds
            {
                break;
            }
        } else {
            best_trees = trees.len();
        }
    }
    if options.early_stopping_rounds.is_some() && validation_rows > 0 {
        trees.truncate(best_trees.max(1));
    }
    // The validation rows' margins with the kept trees (added in the same order as above).
    let validation_raw = (0..validation_rows)
        .map(|row| {
            let input = &data.validation_inputs[row * data.width..(row + 1) * data.width];
            trees.iter().fold(init, |sum, tree| sum + tree.leaf_value(input))
        })
        .collect();
    Ensemble { init, trees, validation_raw }
}

/// Trains the ensemble on `data`'s tree rows, with early stopping and Platt scaling on its
/// validation rows. `progress` hears (tree number, most trees) after each tree.
pub(crate) fn fit_boosted(data: &BoostingData, options: &BoostingOptions, progress: &mut dyn FnMut(usize, usize)) -> BoostedModel {
    let ensemble = grow_ensemble(data, options, progress);
    let (platt_scale, platt_shift) = if data.validation_labels.is_empty() { (1.0, 0.0) } else { fit_platt(&ensemble.validation_raw, data.validation_labels) };
    BoostedModel::new(ensemble.init, ensemble.trees, platt_scale, platt_shift)
}

/// A refit on more rows than early stopping saw grows this many times the trees it kept.
const REFIT_GROWTH: f64 = 1.1;

/// For small training parts: k-fold cross-validation instead of one validation slice.
///
/// Each fold's trees grow on the other folds with early stopping on it; a refit grows on every
/// row, as many trees as the folds kept on average (times [`REFIT_GROWTH`]); the model averages
/// the refit and the k fold models; Platt scaling is fitted on the out-of-fold margins. `inputs` and
/// `labels` hold every training row, `folds` each row's fold (0..k).
pub(crate) fn fit_boosted_folds(
    width: usize,
    columns: &[(usize, ColumnKind)],
    inputs: &[f64],
    labels: &[bool],
    folds: &[usize],
    options: &BoostingOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> BoostedModel {
    let k = folds.iter().max().map_or(0, |&fold| fold + 1);
    let gather = |keep: &dyn Fn(usize) -> bool| -> (Vec<f64>, Vec<bool>) {
        let mut part_inputs = Vec::new();
        let mut part_labels = Vec::new();
        for (row, &label) in labels.iter().enumerate().filter(|&(row, _)| keep(folds[row])) {
            part_inputs.extend_from_slice(&inputs[row * width..(row + 1) * width]);
            part_labels.push(label);
        }
        (part_inputs, part_labels)
    };
    // Folds are independent: fitted in parallel, collected in fold order.
    let fold_fits: Vec<Ensemble> = (0..k)
        .into_par_iter()
        .map(|fold| {
            let (train_inputs, train_labels) = gather(&|f| f != fold);
            let (validation_inputs, validation_labels) = gather(&|f| f == fold);
            let data = BoostingData {
                width,
                columns: columns.to_vec(),
                train_inputs: &train_inputs,
                train_labels: &train_labels,
                validation_inputs: &validation_inputs,
                validation_labels: &validation_labels,
            };
            grow_ensemble(&data, options, &mut |_, _| {})
        })
        .collect();
    let mut out_of_fold = vec![0.0; labels.len()];
    for (fold, fit) in fold_fits.iter().enumerate() {
        let rows = (0..labels.len()).filter(|&row| folds[row] == fold);
        for (row, &raw) in rows.zip(&fit.validation_raw) {
            out_of_fold[row] = raw;
        }
    }
    let kept = fold_fits.iter().map(|fit| fit.trees.len()).sum::<usize>() as f64 / k.max(1) as f64;
    let trees = ((kept * REFIT_GROWTH).round() as usize).clamp(1, options.max_iterations.max(1));
    let data = BoostingData::without_validation(width, columns.to_vec(), inputs, labels);
    let refit_options = BoostingOptions { max_iterations: trees, early_stopping_rounds: None, ..options.clone() };
    let ensemble = grow_ensemble(&data, &refit_options, progress);
    // The model is the average of the refit and the k fold models, which steadies it where one
    // fit depends much on which rows it drew. An average of ensembles is one ensemble: every
    // tree's node values and every intercept weighted 1/(k + 1) (the path credits scale alike).
    let members: Vec<Ensemble> = std::iter::once(ensemble).chain(fold_fits).collect();
    let weight = 1.0 / members.len() as f64;
    let init = members.iter().map(|member| weight * member.init).sum();
    let trees = members
        .into_iter()
        .flat_map(|member| member.trees)
        .map(|mut tree| {
            for node in &mut tree.nodes {
                node.value *= weight;
            }
            tree
        })
        .collect();
    // Calibrated on margins of rows the scoring trees did not learn from (each row's own fold
    // model's): the nearest to unseen data a small training part has.
    let (platt_scale, platt_shift) = fit_platt(&out_of_fold, labels);
    BoostedModel::new(init, trees, platt_scale, platt_shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn edges_are_midpoints_between_few_distinct_values() {
        assert_eq!(numeric_edges(vec![3.0, 1.0, 2.0, 2.0], 255), vec![1.5, 2.5]);
        let many: Vec<f64> = (0..1000).map(f64::from).collect();
        let edges = numeric_edges(many, 10);
        assert_eq!(edges.len(), 9);
        assert_eq!(edges[0], 99.5);
    }

    #[test]
    fn platt_recovers_a_known_scaling() {
        let mut rng = crate::rng::SplitMix64::new(9);
        let raw: Vec<f64> = (0..20_000).map(|_| 3.0 * rng.normal()).collect();
        let labels: Vec<bool> = raw.iter().map(|&x| rng.next_f64() < sigmoid(0.5 * x - 1.0)).collect();
        let (a, b) = fit_platt(&raw, &labels);
        assert!((a - 0.5).abs() < 0.05 && (b + 1.0).abs() < 0.08, "{a} {b}");
    }

    fn step_data(rows: usize) -> (Vec<f64>, Vec<bool>) {
        // y = x > 0.5 exactly, x on a grid, with every 7th value missing and labelled positive.
        let mut inputs = vec![];
        let mut labels = vec![];
        for row in 0..rows {
            if row % 7 == 0 {
                inputs.push(f64::NAN);
                labels.push(true);
            } else {
                let x = row as f64 / rows as f64;
                inputs.push(x);
                labels.push(x > 0.5);
            }
        }
        (inputs, labels)
    }

    #[test]
    fn learns_a_step_and_where_missing_values_belong() {
        let (inputs, labels) = step_data(700);
        let data = BoostingData::without_validation(1, vec![(0, ColumnKind::Numeric)], &inputs, &labels);
        let options = BoostingOptions { max_iterations: 30, ..BoostingOptions::default() };
        let model = fit_boosted(&data, &options, &mut |_, _| {});
        assert!(sigmoid(model.logit(&[0.9])) > 0.9);
        assert!(sigmoid(model.logit(&[0.1])) < 0.1);
        assert!(sigmoid(model.logit(&[f64::NAN])) > 0.9, "missing values were all positive");
    }

    #[test]
    fn categorical_splits_group_levels_by_outcome() {
        // Codes 0 and 2 win, 1 and 3 lose: no single threshold on the code separates them.
        let inputs: Vec<f64> = (0..800).map(|row| f64::from(row % 4)).collect();
        let labels: Vec<bool> = (0..800).map(|row| row % 2 == 0).collect();
        let data = BoostingData::without_validation(1, vec![(0, ColumnKind::Categorical { count: 4 })], &inputs, &labels);
        let options = BoostingOptions { max_iterations: 20, ..BoostingOptions::default() };
        let model = fit_boosted(&data, &options, &mut |_, _| {});
        assert_eq!(model.node_count(0), 3, "one split separates the two groups");
        assert!(sigmoid(model.logit(&[2.0])) > 0.85 && sigmoid(model.logit(&[3.0])) < 0.15);
    }

    #[test]
    fn attribution_adds_up_to_the_logit() {
        let (inputs, labels) = step_data(700);
        let data = BoostingData::without_validation(1, vec![(0, ColumnKind::Numeric)], &inputs, &labels);
        let model = fit_boosted(&data, &BoostingOptions { max_iterations: 5, ..BoostingOptions::default() }, &mut |_, _| {});
        for x in [0.1, 0.5, 0.51, 0.9, f64::NAN] {
            let mut contributions = [0.0];
            let intercept = model.explain(&[x], &mut contributions);
            assert!((intercept + contributions[0] - model.logit(&[x])).abs() < 1e-12);
        }
    }

    /// Trees with numeric splits (thresholds shared between trees, one at f64::MAX, both
    /// missing directions), small and large categorical splits, over three features.
    fn random_stored_model(rng: &mut SplitMix64) -> StoredModel {
        let thresholds = [-1.5, -0.0, 0.0, 0.25, 1.0, 2.0, f64::MAX];
        let trees = (0..rng.below(12) + 1)
            .map(|_| {
                // Grow by splitting random leaves, children appended next to each other.
                let mut nodes = vec![Node { value: rng.normal(), split: None }];
                for _ in 0..rng.below(20) {
                    let leaves: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].split.is_none()).collect();
                    let at = leaves[rng.below(leaves.len())];
                    let feature = rng.below(3);
                    let rule = match feature {
                        0 => SplitRule::Numeric { threshold: thresholds[rng.below(thresholds.len())], missing_left: rng.below(2) == 1 },
                        1 => SplitRule::Categorical { left: vec![rng.next_u64() & 0xFF] },
                        _ => SplitRule::Categorical { left: (0..rng.below(4) + 1).map(|_| rng.next_u64()).collect() },
                    };
                    let left = nodes.len() as u32;
                    nodes[at].split = Some(Split { feature, rule, left, right: left + 1 });
                    nodes.push(Node { value: rng.normal(), split: None });
                    nodes.push(Node { value: rng.normal(), split: None });
                }
                StoredTree { nodes }
            })
            .collect();
        StoredModel { init: rng.normal(), trees, platt_scale: 0.5 + rng.next_f64(), platt_shift: rng.normal() }
    }

    /// The straightforward walk over the stored nodes, one tree after another: what the scoring
    /// layout must reproduce bit for bit.
    fn reference_explain(model: &StoredModel, inputs: &[f64], contributions: &mut [f64]) -> (f64, f64) {
        let mut raw = model.init;
        let mut roots = model.init;
        for tree in &model.trees {
            raw += tree.leaf_value(inputs);
            let mut node = &tree.nodes[0];
            while let Some(split) = &node.split {
                // This split alone, with leaves 0 (left) and 1 (right).
                let alone = Split { left: 1, right: 2, ..split.clone() };
                let single =
                    StoredTree { nodes: vec![Node { value: 0.0, split: Some(alone) }, Node { value: 0.0, split: None }, Node { value: 1.0, split: None }] };
                let next = if single.leaf_value(inputs) == 0.0 { split.left } else { split.right };
                let child = &tree.nodes[next as usize];
                contributions[split.feature] += model.platt_scale * (child.value - node.value);
                node = child;
            }
            roots += tree.nodes[0].value;
        }
        (model.platt_scale * raw + model.platt_shift, model.platt_shift + model.platt_scale * roots)
    }

    #[test]
    fn the_scoring_layout_matches_the_stored_trees_bit_for_bit() {
        let mut rng = SplitMix64::new(21);
        let numbers = [-2.0, -1.5, -0.0, 0.0, 0.1, 0.25, 1.0, 1.5, 2.0, 1e300, f64::NAN];
        for _ in 0..200 {
            let stored = random_stored_model(&mut rng);
            let model = BoostedModel::try_from(stored.clone()).unwrap();
            assert_eq!(StoredModel::from(model.clone()), stored, "the stored form round-trips");
            for _ in 0..50 {
                let inputs = [numbers[rng.below(numbers.len())], rng.below(70) as f64, rng.below(260) as f64];
                let mut expected = [0.0; 3];
                let (logit, intercept) = reference_explain(&stored, &inputs, &mut expected);
                assert_eq!(model.logit(&inputs).to_bits(), logit.to_bits(), "{inputs:?}");
                let mut contributions = [0.0; 3];
                assert_eq!(model.explain(&inputs, &mut contributions).to_bits(), intercept.to_bits());
                assert_eq!(contributions.map(f64::to_bits), expected.map(f64::to_bits), "{inputs:?}");
            }
        }
    }

    #[test]
    fn malformed_trees_are_refused() {
        let leaf = |value| Node { value, split: None };
        let split = |left, right| Some(Split { feature: 0, rule: SplitRule::Numeric { threshold: 1.0, missing_left: false }, left, right });
        for nodes in [
            vec![],
            vec![Node { value: 0.0, split: split(0, 1) }, leaf(1.0)],
            vec![Node { value: 0.0, split: split(1, 3) }, leaf(1.0), leaf(2.0), leaf(3.0)],
            vec![Node { value: 0.0, split: split(1, 2) }, leaf(1.0)],
        ] {
            let stored = StoredModel { init: 0.0, trees: vec![StoredTree { nodes }], platt_scale: 1.0, platt_shift: 0.0 };
            assert!(BoostedModel::try_from(stored).is_err());
        }
    }
}
