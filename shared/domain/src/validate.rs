//! Input rules: the plain-text policy, profanity, URLs, lengths.
//!
//! Text is stored as plain text. HTML tags are removed (the text between them kept), control
//! and bidi-override characters removed, Unicode normalized to NFC, and the result trimmed.
//! Clients must still escape text when they render it; the policy keeps markup out of the store.

use unicode_normalization::UnicodeNormalization;

/// Longest post body, in Unicode scalar values after cleaning.
pub const MAX_POST_CHARS: usize = crate::limits::POST_CHARS.usize();
/// Longest comment body, in Unicode scalar values after cleaning.
pub const MAX_COMMENT_CHARS: usize = crate::limits::COMMENT_CHARS.usize();
/// Longest accepted URL, in bytes.
pub const MAX_URL_LEN: usize = crate::limits::URL_BYTES.usize();

/// What to do with text that `rustrict` finds inappropriate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfanityMode {
    /// Refuse the request with 400 `profanity` (default).
    Refuse,
    /// Store the text with the offending words starred out.
    Censor,
}

/// Text that still holds markup after cleaning; refused rather than stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkupLeft;

/// How many strip passes a text may need. Each pass removes at least one tag, and nesting
/// tricks (`<<b>img ...>`) need one pass per level; real text needs one.
const MAX_STRIP_PASSES: usize = 16;

/// Cleans user text into the plain-text policy: removes control, bidi and invisible format
/// characters first (so they cannot hide a tag from the stripper and rebuild it afterwards),
/// normalizes to NFC, strips tags until nothing changes, and trims. What is left must hold
/// no markup as the HTML tokenizer (html5ever, the spec's algorithm) sees it; if it does, the
/// text is refused instead of stored.
pub fn plain_text(raw: &str) -> Result<String, MarkupLeft> {
    let visible: String = raw
        .replace("\r\n", "\n")
        .chars()
        .filter(|c| !is_forbidden_char(*c))
        .collect();
    let mut text: String = visible.nfc().collect();
    let mut passes = 0;
    loop {
        let stripped = strip_tags(&text);
        if stripped == text {
            break;
        }
        passes += 1;
        if passes > MAX_STRIP_PASSES {
            return Err(MarkupLeft);
        }
        text = stripped;
    }
    if holds_markup(&text) {
        return Err(MarkupLeft);
    }
    Ok(text.trim().to_string())
}

/// Whether the HTML tokenizer finds a tag, comment or doctype in `text`: what a page that
/// (wrongly) inserted the text as HTML would turn into markup.
pub fn holds_markup(text: &str) -> bool {
    use html5ever::tendril::StrTendril;
    use html5ever::tokenizer::{BufferQueue, Token, TokenSink, TokenSinkResult, Tokenizer};
    use std::cell::Cell;

    struct Sink(Cell<bool>);
    impl TokenSink for Sink {
        type Handle = ();
        fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
            if matches!(
                token,
                Token::TagToken(_) | Token::CommentToken(_) | Token::DoctypeToken(_)
            ) {
                self.0.set(true);
            }
            TokenSinkResult::Continue
        }
    }
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(text));
    let tokenizer = Tokenizer::new(Sink(Cell::new(false)), Default::default());
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    tokenizer.sink.0.get()
}

fn is_forbidden_char(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        // Bidi embeddings/overrides/isolates and marks: used to disguise text direction.
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
        || c == '\u{200E}'
        || c == '\u{200F}'
        || c == '\u{061C}'
        // Invisible characters that split a word or a tag without showing: zero-width space,
        // word joiner and invisible operators, byte-order mark, Mongolian vowel separator.
        // (Zero-width joiners stay: emoji sequences need them.)
        || c == '\u{200B}'
        || ('\u{2060}'..='\u{2064}').contains(&c)
        || c == '\u{FEFF}'
        || c == '\u{180E}'
}

/// Default-ignorable and filler characters: invisible, so a name holding them looks like
/// another (`al\u{200b}ice`, `\u{3164}`). Removed from display names, where nothing invisible
/// belongs (Unicode's Default_Ignorable_Code_Point set, plus the Hangul fillers).
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// Whether a character shows nothing on its own: whitespace, the invisible and filler
/// characters of [`is_invisible`], the blank Braille pattern, and combining marks (which only
/// decorate another character). A text made of these alone is empty to a reader.
pub fn shows_nothing(c: char) -> bool {
    c.is_whitespace()
        || is_invisible(c)
        || c == '\u{2800}'
        || unicode_normalization::char::is_combining_mark(c)
        // Variation selectors of the supplement (the others are in is_invisible).
        || ('\u{E0100}'..='\u{E01EF}').contains(&c)
}

/// A display name from a token claim: plain text with nothing invisible, runs of whitespace
/// as one space. `None` when nothing visible is left (or markup is).
pub fn display_name(raw: &str) -> Option<String> {
    let text = plain_text(raw).ok()?;
    let visible: String = text.chars().filter(|c| !is_invisible(*c)).collect();
    let name = visible.split_whitespace().collect::<Vec<_>>().join(" ");
    (!name.is_empty()).then_some(name)
}

pub use crate::model::username_key;

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

/// The rules for one text field.
#[derive(Clone, Copy, Debug)]
pub struct TextRules {
    pub field: &'static str,
    pub max_chars: usize,
    pub profanity: ProfanityMode,
}

/// Builds the profanity filter's tables now (about 20 ms, otherwise paid by the first text
/// checked): a cold start does it during init.
pub fn warm_up() {
    crate::profanity::warm_up();
}

/// Why a text field was refused; each is a 400 with its own code (see `code`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// `invalid_content`: markup the cleaning could not remove.
    #[error("`{field}` holds markup that could not be removed; send plain text")]
    Markup { field: &'static str },
    /// `content_required`: nothing a reader would see.
    #[error("`{field}` must not be empty (it shows nothing)")]
    Empty { field: &'static str },
    /// `invalid_content`: too many words with letters hidden behind `*`, `#` or `%`.
    #[error("`{field}` hides letters with `*`, `#` or `%` in {masked} words; at most {max} may: write the others out")]
    Masked {
        field: &'static str,
        masked: usize,
        max: usize,
    },
    /// `content_too_long`.
    #[error("`{field}` is {chars} characters; the limit is {max}")]
    TooLong {
        field: &'static str,
        chars: usize,
        max: usize,
    },
    /// `profanity`: what matched, as written, and where.
    #[error("`{field}` contains language that is not allowed: \"{}\" (characters {} to {})", found.text, found.start, found.end)]
    Profanity {
        field: &'static str,
        found: crate::profanity::Finding,
    },
}

impl TextError {
    /// The API's code for this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            TextError::Markup { .. } | TextError::Masked { .. } => "invalid_content",
            TextError::Empty { .. } => "content_required",
            TextError::TooLong { .. } => "content_too_long",
            TextError::Profanity { .. } => "profanity",
        }
    }
}

/// Cleans and checks a required text field: the value the store keeps, or why not.
pub fn clean_text(raw: &str, rules: TextRules) -> Result<String, TextError> {
    let field = rules.field;
    let text = plain_text(raw).map_err(|MarkupLeft| TextError::Markup { field })?;
    // Empty as a reader sees it: nothing but whitespace, fillers and invisible characters (the
    // folding display names get) is nothing.
    if text.chars().all(shows_nothing) {
        return Err(TextError::Empty { field });
    }
    let masked = crate::profanity::masked_words(&text);
    if masked > crate::profanity::MAX_MASKED_WORDS {
        return Err(TextError::Masked {
            field,
            masked,
            max: crate::profanity::MAX_MASKED_WORDS,
        });
    }
    let chars = text.chars().count();
    if chars > rules.max_chars {
        return Err(TextError::TooLong {
            field,
            chars,
            max: rules.max_chars,
        });
    }
    match rules.profanity {
        ProfanityMode::Refuse => match crate::profanity::first_finding(&text) {
            Some(found) => Err(TextError::Profanity { field, found }),
            None => Ok(text),
        },
        ProfanityMode::Censor => Ok(crate::profanity::censor(&text)),
    }
}

/// Checks a URL the forum would hand to browsers (an avatar from a token's `picture`):
/// absolute `https`, a host, no credentials, bounded length. Returns it normalized, or why not.
pub fn https_url(raw: &str) -> Result<String, &'static str> {
    let raw = raw.trim();
    if raw.len() > MAX_URL_LEN {
        return Err("is too long");
    }
    let url = url::Url::parse(raw).map_err(|_| "is not a valid URL")?;
    if url.scheme() != "https" {
        return Err("must use https");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials");
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_look_alike_share_a_key() {
        let key = username_key("alice");
        for same in [
            "Alice",
            "ALICE",
            "AIice",
            "a1ice",
            "al\u{200B}ice",
            "\u{0430}lice",
            "\u{FF41}\u{FF4C}\u{FF49}\u{FF43}\u{FF45}",
            "a lice",
        ] {
            assert_eq!(username_key(same), key, "{same:?}");
        }
        for different in ["alicia", "alicé", "bob", "alice2"] {
            assert_ne!(username_key(different), key, "{different:?}");
        }
        assert_eq!(username_key("rn"), username_key("m"));
        assert_eq!(username_key("b0b"), username_key("BOB"));
    }

    fn rules() -> TextRules {
        TextRules {
            field: "content",
            max_chars: 20,
            profanity: ProfanityMode::Refuse,
        }
    }

    #[test]
    fn tags_are_removed_and_their_text_kept() {
        assert_eq!(
            plain_text("<b>bold</b> and <i class=\"x\">it</i>").unwrap(),
            "bold and it"
        );
        assert_eq!(plain_text("<script>alert(1)</script>hi").unwrap(), "alert(1)hi");
        assert_eq!(plain_text("a<!-- hidden -->b").unwrap(), "ab");
        assert_eq!(plain_text("<img src=x onerror=alert(1)>").unwrap(), "");
    }

    #[test]
    fn text_that_only_looks_like_markup_is_kept() {
        assert_eq!(plain_text("a < b and 1<2").unwrap(), "a < b and 1<2");
        assert_eq!(plain_text("I <3 rust").unwrap(), "I <3 rust");
        assert_eq!(plain_text("x <b unclosed").unwrap(), "x <b unclosed");
    }

    #[test]
    fn control_and_bidi_characters_are_removed_newlines_kept() {
        assert_eq!(plain_text("a\u{0}b\u{7}c\r\nd\te").unwrap(), "abc\nd\te");
        assert_eq!(plain_text("evil\u{202E}txt.exe\u{FEFF}").unwrap(), "eviltxt.exe");
    }

    #[test]
    fn unicode_is_normalized_to_nfc() {
        // "e" + combining acute becomes the single precomposed "é".
        assert_eq!(plain_text("cafe\u{301}").unwrap(), "caf\u{e9}");
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
            assert!(https_url(bad).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(https_url(&long).is_err());
    }

    /// Tags rebuilt by the cleaning itself: nested brackets, and characters removed after the
    /// stripper ran (the attacks found against the one-pass stripper), with their neighbours.
    #[test]
    fn no_cleaning_step_can_rebuild_a_tag() {
        let payloads = [
            "<<b>img src=x onerror=alert(1)>",
            "<<script>script>alert(1)<</script>/script>",
            "<\u{0}img src=x onerror=alert(1)>",
            "<\u{202E}img src=x onerror=alert(1)>",
            "<\u{FEFF}svg/onload=alert(1)>",
            "<\u{200B}svg onload=alert(1)>",
            "<\u{2060}a href=javascript:alert(1)>x</a>",
            "<<<i>i>i>mg src=x onerror=alert(1)>",
            "<!<!-- -->-- x --><img src=x>",
            "<scr<b></b>ipt>alert(1)</scr<b></b>ipt>",
            "<img\rsrc=x onerror=alert(1)>",
            "<a\u{0}\u{202E}\u{FEFF} href=x>",
        ];
        for payload in payloads {
            for wrapped in [payload.to_string(), format!("before {payload} after")] {
                // Refused (`MarkupLeft`) is as safe as cleaned.
                if let Ok(text) = plain_text(&wrapped) {
                    assert!(!holds_markup(&text), "{wrapped:?} left markup: {text:?}");
                }
            }
        }
        assert_eq!(plain_text("<<b>img src=x onerror=alert(1)>").unwrap(), "");
        assert_eq!(plain_text("hi <\u{FEFF}b>there").unwrap(), "hi there");
    }

    #[test]
    fn ordinary_text_with_angle_brackets_is_kept_as_written() {
        for text in [
            "a<b",
            "if x < y and y > z",
            "I <3 you",
            "<- back",
            "1 < 2 > 0",
            "-->",
            "x <b unclosed",
        ] {
            assert_eq!(plain_text(text).unwrap(), text);
        }
    }

    #[test]
    fn display_names_lose_invisible_characters() {
        assert_eq!(display_name("al\u{200B}ice").as_deref(), Some("alice"));
        assert_eq!(display_name("a\u{2060}lice").as_deref(), Some("alice"));
        assert_eq!(display_name("\u{3164}"), None);
        assert_eq!(display_name("  bob \u{115F}  smith "), Some("bob smith".into()));
        assert_eq!(display_name("<<b>img src=x onerror=alert(1)>"), None);
    }
}
