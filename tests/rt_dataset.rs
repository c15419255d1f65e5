//! The Rotten Tomatoes CSV loads with the counts PROTOCOL.md gives.

mod common;

use matryoshka_lora::data::{CsvSpec, SplitRule, TextClassificationData};

#[test]
fn rt_counts_match_the_protocol() {
    let csv = common::rt_csv();
    // All 13,905 rows: fresh 7,403, rotten 5,405, plot 1,097.
    let all =
        TextClassificationData::from_csv(&csv, &CsvSpec::default(), &SplitRule::Every(5)).unwrap();
    assert_eq!(all.labels, ["fresh", "plot", "rotten"]);
    let mut counts = [0usize; 3];
    for ex in all.train.iter().chain(&all.test) {
        counts[ex.label] += 1;
    }
    assert_eq!(counts, [7403, 1097, 5405]);

    let spec = CsvSpec {
        labels: Some(vec!["rotten".into(), "fresh".into()]),
        ..CsvSpec::default()
    };
    let rt = TextClassificationData::from_csv(&csv, &spec, &SplitRule::Every(5)).unwrap();
    assert_eq!(rt.train.len() + rt.test.len(), 12_808);
    assert_eq!(rt.test.len(), 12_808usize.div_ceil(5)); // rows 0, 5, 10, ...
    assert_eq!(rt.train.len(), 12_808 - 2_562);
    let rt = rt.truncate(Some(4000), Some(1000)).unwrap();
    assert_eq!((rt.train.len(), rt.test.len()), (4000, 1000));
    let fresh = rt.train.iter().filter(|e| e.label == 1).count();
    assert!(
        fresh > 1500 && fresh < 3000,
        "fresh share of first 4000 train rows: {fresh}"
    );
}
