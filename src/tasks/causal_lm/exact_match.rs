//! Exact match of a generated answer against a reference.

/// The final answer of a GSM8K-style text: what follows the last `####`,
/// trimmed, with thousands separators (`,`) and a trailing `.` removed.
/// `None` when the text has no `####`.
pub fn final_answer(text: &str) -> Option<String> {
    let (_, tail) = text.rsplit_once("####")?;
    let answer = tail.trim().lines().next().unwrap_or("").trim();
    Some(
        answer
            .replace(',', "")
            .trim_end_matches('.')
            .trim()
            .to_string(),
    )
}

/// Whether `generated` matches `reference`: their final answers when the
/// reference has one (`#### N`), else the whole texts after trimming.
///
/// ```
/// use matryoshka_lora::tasks::causal_lm::exact_match;
/// assert!(exact_match("so 3 + 4 = 7\n#### 7", "4 + 3 is 7.\n#### 7"));
/// assert!(exact_match("#### 1,000", "#### 1000"));
/// assert!(!exact_match("the answer is 7", "#### 7"));
/// assert!(exact_match(" Paris\n", "Paris"));
/// ```
pub fn exact_match(generated: &str, reference: &str) -> bool {
    match final_answer(reference) {
        Some(expected) => final_answer(generated).is_some_and(|got| got == expected),
        None => generated.trim() == reference.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm8k_answers_and_plain_texts() {
        assert_eq!(final_answer("a\n#### 18").as_deref(), Some("18"));
        assert_eq!(final_answer("#### 1 #### 2\nmore").as_deref(), Some("2"));
        assert_eq!(final_answer("#### -3.5.").as_deref(), Some("-3.5"));
        assert_eq!(final_answer("no marker"), None);
        assert!(exact_match("x #### 18", "y #### 18"));
        assert!(!exact_match("x #### 17", "y #### 18"));
        assert!(!exact_match("####", "#### 18"));
        assert!(exact_match("yes", " yes "));
        assert!(!exact_match("yes.", "yes"));
    }
}
