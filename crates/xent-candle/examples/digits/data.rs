//! The UCI optical handwritten digits as scikit-learn ships them
//! (`data/digits/digits.csv.gz`, see `data/digits/README.md`): loading, a seeded
//! stratified split and feature standardization. Shared with the test that checks the
//! data file (`tests/digits_data.rs`).

use std::io::Read;
use std::path::{Path, PathBuf};

/// Pixels per image (8×8).
pub const FEATURES: usize = 64;
/// Digits 0..9.
pub const CLASSES: usize = 10;

/// Images as rows of [`FEATURES`] pixel counts (0..16), and their labels.
pub struct Digits {
    /// Row-major, `len() × FEATURES`.
    pub features: Vec<f32>,
    /// One label in `0..CLASSES` per row.
    pub labels: Vec<u32>,
}

impl Digits {
    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// The rows `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Digits {
        let mut features = Vec::with_capacity(idx.len() * FEATURES);
        for &i in idx {
            features.extend_from_slice(&self.features[i * FEATURES..(i + 1) * FEATURES]);
        }
        Digits {
            features,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
        }
    }
}

/// `data/digits/digits.csv.gz` in this repository.
pub fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/digits/digits.csv.gz")
}

/// Reads the gzipped CSV: 65 integers per line, the pixels then the label.
pub fn load(path: &Path) -> Result<Digits, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for (line_no, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = |what: &str| format!("{}:{}: {what}", path.display(), line_no + 1);
        let values: Vec<u32> = line
            .split(',')
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .map(|f| f as u32)
                    .map_err(|e| at(&e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        if values.len() != FEATURES + 1 {
            return Err(at(&format!(
                "{} values, expected {}",
                values.len(),
                FEATURES + 1
            )));
        }
        let (pixels, label) = values.split_at(FEATURES);
        if let Some(p) = pixels.iter().find(|&&p| p > 16) {
            return Err(at(&format!("pixel {p} outside 0..=16")));
        }
        if label[0] as usize >= CLASSES {
            return Err(at(&format!("label {} outside 0..{CLASSES}", label[0])));
        }
        features.extend(pixels.iter().map(|&p| p as f32));
        labels.push(label[0]);
    }
    Ok(Digits { features, labels })
}

/// A deterministic pseudo-random stream (splitmix64).
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// A stratified split: from each class, a seeded shuffle's first `test_fraction` of
/// its rows go to the test set. Returns `(train, test)` row indices, each shuffled.
pub fn stratified_split(labels: &[u32], test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = SplitMix(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for class in 0..CLASSES as u32 {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rng.shuffle(&mut rows);
        let n_test = (rows.len() as f64 * test_fraction).round() as usize;
        test.extend_from_slice(&rows[..n_test]);
        train.extend_from_slice(&rows[n_test..]);
    }
    rng.shuffle(&mut train);
    rng.shuffle(&mut test);
    (train, test)
}

/// Per-feature mean and standard deviation of `x` (pixels that never vary get 1).
pub fn standardizer(x: &Digits) -> (Vec<f32>, Vec<f32>) {
    let n = x.len() as f64;
    let mut mean = vec![0.0f64; FEATURES];
    let mut var = vec![0.0f64; FEATURES];
    for row in x.features.chunks(FEATURES) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64 / n;
        }
    }
    for row in x.features.chunks(FEATURES) {
        for ((s, &m), &v) in var.iter_mut().zip(&mean).zip(row) {
            *s += (v as f64 - m).powi(2) / n;
        }
    }
    let std = var
        .iter()
        .map(|&v| if v > 1e-12 { v.sqrt() as f32 } else { 1.0 })
        .collect();
    (mean.iter().map(|&m| m as f32).collect(), std)
}

/// `(x − mean)/std`, feature by feature.
pub fn standardize(x: &mut Digits, mean: &[f32], std: &[f32]) {
    for row in x.features.chunks_mut(FEATURES) {
        for ((v, m), s) in row.iter_mut().zip(mean).zip(std) {
            *v = (*v - m) / s;
        }
    }
}
