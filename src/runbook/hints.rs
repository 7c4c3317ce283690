//! Did-you-mean hints for misspelt keys, values and timezones.

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (c, strsim::jaro_winkler(&lower, &c.to_ascii_lowercase())))
        .filter(|(_, score)| *score >= 0.8)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

/// `did you mean "x"?` for the closest candidate.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean \"{c}\"?"))
}

/// The IANA zone a person most likely meant: exact up to case, spaces for
/// underscores, then the closest spelling.
pub fn timezone(word: &str) -> Option<String> {
    let normal = word.trim().replace(' ', "_").to_ascii_lowercase();
    let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
    if let Some(exact) = names.clone().find(|n| n.to_ascii_lowercase() == normal) {
        return Some(format!("did you mean \"{exact}\"?"));
    }
    did_you_mean(word, names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(
            closest("timezon", ["cron", "timezone", "every"]),
            Some("timezone")
        );
        assert_eq!(closest("xyz", ["cron", "timezone"]), None);
    }

    #[test]
    fn suggests_timezones() {
        assert_eq!(
            timezone("America/Sao Paulo").unwrap(),
            "did you mean \"America/Sao_Paulo\"?"
        );
        assert_eq!(
            timezone("europe/berlin").unwrap(),
            "did you mean \"Europe/Berlin\"?"
        );
    }
}
