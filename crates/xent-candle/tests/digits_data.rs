//! The digits data file the `digits` example trains on loads as 1797 images of 64
//! pixels plus a label, every class present (no training here).

#[allow(dead_code)]
#[path = "../examples/digits/data.rs"]
mod data;

#[test]
fn digits_file_has_1797_rows_of_64_pixels_and_a_label() {
    let d = data::load(&data::default_path()).expect("data/digits/digits.csv.gz loads");
    assert_eq!(d.len(), 1797);
    assert_eq!(d.features.len(), 1797 * data::FEATURES);
    assert_eq!(data::FEATURES, 64);
    let mut counts = [0usize; data::CLASSES];
    for &y in &d.labels {
        counts[y as usize] += 1;
    }
    // The class sizes of sklearn's copy (UCI optdigits.tes).
    assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    assert!(d.features.iter().all(|&p| (0.0..=16.0).contains(&p)));

    let (train, test) = data::stratified_split(&d.labels, 0.2, 1);
    assert_eq!(train.len() + test.len(), 1797);
    assert_eq!(test.len(), 359); // round(0.2·n) per class
}
