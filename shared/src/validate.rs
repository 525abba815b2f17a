//! Input rules: the plain-text policy, profanity, URLs, lengths.
//!
//! Text is stored as plain text. HTML tags are removed (the text between them kept), control
//! and bidi-override characters removed, Unicode normalized to NFC, and the result trimmed.
//! Clients must still escape text when they render it; the policy keeps markup out of the store.

use rustrict::{Censor, Type};
use unicode_normalization::UnicodeNormalization;

use crate::error::ApiError;

/// Longest post body, in Unicode scalar values after cleaning.
pub const MAX_POST_CHARS: usize = 5_000;
/// Longest comment body, in Unicode scalar values after cleaning.
pub const MAX_COMMENT_CHARS: usize = 2_000;
/// Longest accepted URL, in bytes.
pub const MAX_URL_LEN: usize = 2_048;

/// What to do with text that `rustrict` finds inappropriate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfanityMode {
    /// Refuse the request with 400 `profanity` (default).
    Refuse,
    /// Store the text with the offending words starred out.
    Censor,
}

/// Cleans user text into the plain-text policy: strips tags, control characters and bidi
/// overrides, normalizes to NFC, normalizes newlines and trims.
pub fn plain_text(raw: &str) -> String {
    let without_tags = strip_tags(raw);
    let normalized: String = without_tags.replace("\r\n", "\n").nfc().collect();
    normalized
        .chars()
        .filter(|c| !is_forbidden_char(*c))
        .collect::<String>()
        .trim()
        .to_string()
}

fn is_forbidden_char(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        // Bidi embeddings/overrides/isolates: used to disguise text direction.
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
        // Byte-order mark and zero-width no-break space.
        || c == '\u{FEFF}'
}

/// Removes HTML tags and comments, keeping the text between them. A `<` that does not start a
/// tag (`a < b`, `<3`) and a tag that never closes are kept as text: without a closing `>`
/// they cannot form markup.
fn strip_tags(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let candidate = &rest[start..];
        let after = &candidate[1..];
        if let Some(body) = after.strip_prefix("!--") {
            // A comment runs to `-->`; an unterminated one swallows the rest, as browsers do.
            match body.find("-->") {
                Some(end) => rest = &body[end + 3..],
                None => rest = "",
            }
            continue;
        }
        let starts_tag = after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '!' || c == '?');
        match (starts_tag, after.find('>')) {
            (true, Some(end)) => rest = &after[end + 1..],
            _ => {
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// What the filter acts on: moderate or worse profanity, slurs and sexual language, and
/// severe meanness. Milder hits are left alone: at `mild`, rustrict flags ordinary text such
/// as "alice's words" or "I hate mondays", and a forum must not refuse those.
fn refused_language() -> Type {
    ((Type::PROFANE | Type::OFFENSIVE | Type::SEXUAL) & Type::MODERATE_OR_HIGHER) | (Type::MEAN & Type::SEVERE)
}

/// The rules for one text field.
#[derive(Clone, Copy, Debug)]
pub struct TextRules {
    pub field: &'static str,
    pub max_chars: usize,
    pub profanity: ProfanityMode,
}

/// Cleans and checks a required text field: the value the store keeps, or a 400.
/// Builds the profanity filter's tables now (about 20 ms, otherwise paid by the first text
/// checked): a cold start does it during init.
pub fn warm_up() {
    let _ = Censor::from_str("warm up").censor_and_analyze();
}

pub fn clean_text(raw: &str, rules: TextRules) -> Result<String, ApiError> {
    let text = plain_text(raw);
    if text.is_empty() {
        return Err(ApiError::bad_request(
            "content_required",
            format!("`{}` must not be empty", rules.field),
        ));
    }
    let chars = text.chars().count();
    if chars > rules.max_chars {
        return Err(ApiError::bad_request(
            "content_too_long",
            format!(
                "`{}` is {chars} characters; the limit is {}",
                rules.field, rules.max_chars
            ),
        ));
    }
    let (censored, analysis) = Censor::from_str(&text)
        .with_censor_threshold(refused_language())
        .censor_and_analyze();
    if analysis.is(refused_language()) {
        return match rules.profanity {
            ProfanityMode::Refuse => Err(ApiError::bad_request(
                "profanity",
                format!("`{}` contains language that is not allowed", rules.field),
            )),
            ProfanityMode::Censor => Ok(censored),
        };
    }
    Ok(text)
}

/// Checks a URL the forum would hand to browsers: absolute `https`, a host, no credentials,
/// bounded length. Returns it normalized.
pub fn https_url(raw: &str) -> Result<String, ApiError> {
    let raw = raw.trim();
    let bad = |why: &str| ApiError::bad_request("invalid_media_url", format!("`media_url` {why}"));
    if raw.len() > MAX_URL_LEN {
        return Err(bad(&format!("is longer than {MAX_URL_LEN} bytes")));
    }
    let url = url::Url::parse(raw).map_err(|_| bad("is not a valid URL"))?;
    if url.scheme() != "https" {
        return Err(bad("must use https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> TextRules {
        TextRules {
            field: "content",
            max_chars: 20,
            profanity: ProfanityMode::Refuse,
        }
    }

    #[test]
    fn tags_are_removed_and_their_text_kept() {
        assert_eq!(plain_text("<b>bold</b> and <i class=\"x\">it</i>"), "bold and it");
        assert_eq!(plain_text("<script>alert(1)</script>hi"), "alert(1)hi");
        assert_eq!(plain_text("a<!-- hidden -->b"), "ab");
        assert_eq!(plain_text("<img src=x onerror=alert(1)>"), "");
    }

    #[test]
    fn text_that_only_looks_like_markup_is_kept() {
        assert_eq!(plain_text("a < b and 1<2"), "a < b and 1<2");
        assert_eq!(plain_text("I <3 rust"), "I <3 rust");
        assert_eq!(plain_text("x <b unclosed"), "x <b unclosed");
    }

    #[test]
    fn control_and_bidi_characters_are_removed_newlines_kept() {
        assert_eq!(plain_text("a\u{0}b\u{7}c\r\nd\te"), "abc\nd\te");
        assert_eq!(plain_text("evil\u{202E}txt.exe\u{FEFF}"), "eviltxt.exe");
    }

    #[test]
    fn unicode_is_normalized_to_nfc() {
        // "e" + combining acute becomes the single precomposed "é".
        assert_eq!(plain_text("cafe\u{301}"), "caf\u{e9}");
    }

    #[test]
    fn empty_after_cleaning_is_refused() {
        let err = clean_text("  <p> </p>\n", rules()).unwrap_err();
        assert_eq!(err.code(), "content_required");
    }

    #[test]
    fn length_is_counted_in_characters_after_cleaning() {
        assert!(clean_text(&"é".repeat(20), rules()).is_ok());
        let err = clean_text(&"é".repeat(21), rules()).unwrap_err();
        assert_eq!(err.code(), "content_too_long");
        // Markup does not count against the limit.
        assert!(clean_text(&format!("<b>{}</b>", "y".repeat(20)), rules()).is_ok());
    }

    #[test]
    fn profanity_is_refused_by_default_and_censored_on_request() {
        let long = TextRules {
            max_chars: 200,
            ..rules()
        };
        assert_eq!(
            clean_text("you are a fucking idiot", long).unwrap_err().code(),
            "profanity"
        );
        let censor = TextRules {
            profanity: ProfanityMode::Censor,
            ..long
        };
        let censored = clean_text("you are a fucking idiot", censor).unwrap();
        assert!(!censored.contains("fucking"), "{censored}");
        assert!(censored.starts_with("you are a "), "{censored}");
        assert_eq!(
            clean_text("a perfectly nice post", long).unwrap(),
            "a perfectly nice post"
        );
    }

    #[test]
    fn urls_must_be_https_with_a_host_and_no_credentials() {
        assert_eq!(
            https_url("https://cdn.example.com/a.jpg").unwrap(),
            "https://cdn.example.com/a.jpg"
        );
        for bad in [
            "http://cdn.example.com/a.jpg",
            "javascript:alert(1)",
            "data:image/png;base64,AAAA",
            "https://user:pw@example.com/x",
            "not a url",
            "//example.com/x",
        ] {
            assert_eq!(https_url(bad).unwrap_err().code(), "invalid_media_url", "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(https_url(&long).is_err());
    }
}
