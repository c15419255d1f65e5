//! The study's math data (scripts/make-math-data.sh, into `$MLORA_ASSETS/math`
//! or `assets/math`): GSM-style rows split by template, the real GSM8K
//! originals only of test templates, chain sums without test rows seen in
//! training, every answer ending in a final `#### N`.

mod common;

use matryoshka_lora::tasks::causal_lm::final_answer;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn math_dir() -> PathBuf {
    let dir = common::assets_dir().join("math");
    assert!(
        dir.join("manifest.json").is_file(),
        "{} missing: run scripts/make-math-data.sh {} first",
        dir.display(),
        dir.display()
    );
    dir
}

fn rows(name: &str) -> Vec<Value> {
    let path = math_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn templates(rows: &[Value]) -> BTreeSet<u64> {
    rows.iter()
        .map(|r| r["template"].as_u64().unwrap())
        .collect()
}

#[test]
fn gsm_rows_are_split_by_template_and_originals_are_of_test_templates() {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(math_dir().join("manifest.json")).unwrap()).unwrap();
    let (train, test, originals) = (
        rows("gsm_train.jsonl"),
        rows("gsm_test.jsonl"),
        rows("gsm8k_originals_test.jsonl"),
    );
    let counts = &manifest["counts"];
    assert_eq!(counts["gsm_train"].as_u64().unwrap() as usize, train.len());
    assert_eq!(counts["gsm_test"].as_u64().unwrap() as usize, test.len());
    assert_eq!(
        counts["gsm8k_originals_test"].as_u64().unwrap() as usize,
        originals.len()
    );
    let (train_t, test_t) = (templates(&train), templates(&test));
    assert!(
        train_t.len() >= 40 && test_t.len() >= 10,
        "{train_t:?} {test_t:?}"
    );
    assert!(train_t.is_disjoint(&test_t), "a template on both sides");
    assert!(templates(&originals).is_subset(&test_t));
    assert!(!originals.is_empty());
    // all 100 originals matched to distinct generators
    let matched: BTreeSet<u64> = manifest["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["template"].as_u64().unwrap())
        .collect();
    assert_eq!(matched.len(), 100);
    for row in train.iter().chain(&test).chain(&originals) {
        let answer = row["answer"].as_str().unwrap();
        assert!(!row["question"].as_str().unwrap().is_empty());
        let last = final_answer(answer).unwrap_or_else(|| panic!("no #### in {answer}"));
        assert!(last.parse::<f64>().is_ok(), "{last}");
        assert!(!answer.contains("<<"), "calculator notes left: {answer}");
    }
    let questions = |rows: &[Value]| -> BTreeSet<String> {
        rows.iter()
            .map(|r| r["question"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(questions(&train).is_disjoint(&questions(&test)));
}

#[test]
fn chain_sums_have_no_test_row_in_training_and_correct_answers() {
    let (train, test) = (rows("chain_train.jsonl"), rows("chain_test.jsonl"));
    assert!(train.len() >= 1000 && test.len() >= 100);
    let seen: BTreeSet<&str> = train
        .iter()
        .map(|r| r["question"].as_str().unwrap())
        .collect();
    for row in train.iter().chain(&test) {
        let q = row["question"].as_str().unwrap();
        let expr = q.trim_start_matches("What is ").trim_end_matches('?');
        // evaluate `a + b - c` left to right
        let mut tokens = expr.split_whitespace();
        let mut value: i64 = tokens.next().unwrap().parse().unwrap();
        while let (Some(op), Some(n)) = (tokens.next(), tokens.next()) {
            let n: i64 = n.parse().unwrap();
            value = if op == "+" { value + n } else { value - n };
        }
        let answer = final_answer(row["answer"].as_str().unwrap()).unwrap();
        assert_eq!(answer, value.to_string(), "{q}");
    }
    assert!(
        test.iter()
            .all(|r| !seen.contains(r["question"].as_str().unwrap()))
    );
}
