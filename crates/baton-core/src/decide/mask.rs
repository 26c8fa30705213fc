//! Which secret values the log masker hides.

/// The shortest value masked: shorter ones would hide ordinary text all over a log.
pub const MIN_MASKED_LEN: usize = 4;

/// The values to mask, from every secret value a job could print (its own secret environment
/// and every secret the config holds): those of at least [`MIN_MASKED_LEN`] bytes, sorted, each
/// once.
pub fn mask_values(values: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut mask: Vec<String> = values
        .into_iter()
        .filter(|v| v.len() >= MIN_MASKED_LEN)
        .collect();
    mask.sort();
    mask.dedup();
    mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_values_are_not_masked() {
        let v = mask_values(["abc", "abcd", "s3cret", "abcd"].map(String::from));
        assert_eq!(v, vec!["abcd".to_string(), "s3cret".to_string()]);
    }

    proptest! {
        /// Every value long enough is masked, once; nothing else is.
        #[test]
        fn every_long_value_is_masked(values in proptest::collection::vec(".{0,8}", 0..10)) {
            let mask = mask_values(values.clone());
            for v in &values {
                prop_assert_eq!(mask.contains(v), v.len() >= MIN_MASKED_LEN);
            }
            prop_assert!(mask.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(mask.iter().all(|m| values.contains(m)));
        }
    }
}
