//! The profanity filter: `rustrict` judges words, one at a time, after they are folded the
//! way a reader sees them.
//!
//! Judged on whole texts, rustrict reads digits as letters and matches across spaces and
//! punctuation, so prices, times, ids and ordinary prose were refused ("Tickets cost $788.70",
//! "On the eighth day, God ..."). Here each word is judged alone:
//! - a word with no letter (numbers, dates, prices, phone numbers) is never profane;
//! - fullwidth and other compatibility forms are folded (NFKC), and letters from other scripts
//!   that look like Latin ones become those (UTS #39 confusables: Cyrillic `у` is `y`);
//! - leetspeak, repeated letters and punctuation inside a word are rustrict's own job (`sh1t`,
//!   `fuuuck`, `f.u.c.k`); letters spaced out over several words (`f u c k`) are joined first,
//!   wherever they start in a run of single letters (`what a f u c k`);
//! - a letter masked by `*`, `#` or `%` (`s*it`, `f**k`) is read as each letter a reader might
//!   fill in;
//! - zero-width characters never get here: text cleaning removes them.
//!
//! What is refused: moderate-or-worse profanity and offensive language (slurs), severe sexual
//! language and severe meanness. Milder hits pass: rustrict rates words such as "naked" or
//! "hell" as mildly-to-moderately bad, and a forum must not refuse those.

use std::ops::Range;

use rustrict::{Censor, Trie, Type};
use unicode_normalization::UnicodeNormalization;

/// What was refused: the span as written and where it is (character offsets, end exclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

fn refused_language() -> Type {
    ((Type::PROFANE | Type::OFFENSIVE) & Type::MODERATE_OR_HIGHER) | ((Type::SEXUAL | Type::MEAN) & Type::SEVERE)
}

/// A word of the text: its characters' range and the word as written.
struct Word {
    chars: Range<usize>,
    text: String,
}

/// Characters that stand for letters inside words (`$h!t`, `@ss`, `a$$`).
fn stands_for_letter(c: char) -> bool {
    matches!(c, '@' | '$' | '!' | '|' | '+')
}

/// Splits on whitespace and trims punctuation at a word's ends (keeping leet symbols that touch
/// a letter or digit).
fn words(text: &str) -> Vec<Word> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() {
            i += 1;
        }
        let keep = |c: char| c.is_alphanumeric() || stands_for_letter(c);
        let (mut s, mut e) = (start, i);
        while s < e && !keep(chars[s]) {
            s += 1;
        }
        while e > s && !keep(chars[e - 1]) {
            e -= 1;
        }
        // A trailing `!` is punctuation ("great!"), not an `i`.
        while e > s + 1 && chars[e - 1] == '!' {
            e -= 1;
        }
        if s < e {
            out.push(Word {
                chars: s..e,
                text: chars[s..e].iter().collect(),
            });
        }
    }
    out
}

/// A word as a reader sees it: compatibility forms folded, look-alike letters from other
/// scripts mapped to the Latin ones they imitate, lower case.
fn folded(word: &str) -> String {
    use unicode_security::confusable_detection::skeleton;
    let mut out = String::with_capacity(word.len());
    for c in word.nfkc() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
            continue;
        }
        let mut buf = [0u8; 4];
        let prototype: String = skeleton(c.encode_utf8(&mut buf)).collect();
        if !prototype.is_empty() && prototype.is_ascii() {
            out.push_str(&prototype.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Letters from other scripts that readers take for more than one Latin letter: the
/// confusables skeleton picks one (`у` is `y`), a word may mean the other (`fуck`).
const AMBIGUOUS_LOOKALIKES: &[(char, char)] = &[
    ('у', 'u'),
    ('У', 'u'),
    ('υ', 'u'),
    ('μ', 'u'),
    ('ν', 'v'),
    ('п', 'n'),
    ('ь', 'b'),
    ('н', 'h'),
    ('т', 't'),
    ('к', 'k'),
    ('м', 'm'),
];

/// Digits and symbols that stand for letters (`b00b5`, `$h!t`).
const LEET: &[(char, char)] = &[
    ('0', 'o'),
    ('1', 'i'),
    ('3', 'e'),
    ('4', 'a'),
    ('5', 's'),
    ('7', 't'),
    ('@', 'a'),
    ('$', 's'),
    ('!', 'i'),
    ('|', 'l'),
    ('+', 't'),
];

/// The longest word spelled out letter by letter that is looked for (`motherfucking` is 13).
const MAX_SPELLED_LETTERS: usize = 16;

/// Digits that never stand for letters: a word with one is an id or a code (`AF4926`,
/// `7f15e3a2`, `x86`) rather than a word.
fn code_digit(c: char) -> bool {
    matches!(c, '2' | '6' | '8' | '9')
}

/// The pieces of a code-like word between its code digits that could be words of their own
/// (three characters or more, a letter among them): a code digit next to a word does not make
/// it a code (`fuck2`, `sh1t9` were never judged).
fn code_pieces(word: &str) -> impl Iterator<Item = &str> {
    word.split(code_digit)
        .filter(|piece| piece.chars().count() >= 3 && piece.chars().any(char::is_alphabetic))
}

/// Runs of three or more of one letter shortened to `keep` (`fuuuck`, `whoooreee`).
fn collapse_runs(word: &str, keep: usize) -> String {
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::with_capacity(word.len());
    let mut i = 0;
    while i < chars.len() {
        let mut j = i;
        while j < chars.len() && chars[j] == chars[i] {
            j += 1;
        }
        let run = if j - i >= 3 { keep } else { j - i };
        out.extend(std::iter::repeat_n(chars[i], run));
        i = j;
    }
    out
}

/// A word spelled out with separators between single letters (`c.o.c.k`, `s-h-i-t`), joined.
fn spelled_out(word: &str) -> Option<String> {
    let parts: Vec<&str> = word.split(['.', '-', '_', '*', '/', ',']).collect();
    (parts.len() >= 3 && parts.iter().all(|p| p.chars().count() == 1)).then(|| parts.concat())
}

/// Characters that hide a letter (`s*it`, `f#ck`, `f%%k`).
fn is_mask(c: char) -> bool {
    matches!(c, '*' | '#' | '%')
}

/// A word with more masks than this is not read letter by letter (26^3 fillings, and a reader
/// cannot tell what it hides either).
const MAX_MASKS: usize = 2;
/// Words that hide letters a text may hold: each costs up to 2 x 26^2 judgements, so a text
/// with more is refused (`validate`) rather than read slowly or let through unread.
pub const MAX_MASKED_WORDS: usize = crate::limits::MASKED_WORDS.usize();

/// How many words of `text` hide letters behind masks (the ones read letter by letter).
pub fn masked_words(text: &str) -> usize {
    let mut seen: Vec<String> = words(text)
        .into_iter()
        .map(|w| folded(&w.text))
        .filter(|w| !unmasked(w).is_empty())
        .collect();
    seen.sort();
    seen.dedup();
    seen.len()
}

/// A word with masked letters filled in every way a reader might: `s*it` is `shit`, among
/// others. Empty unless the word masks one or two letters between letters.
fn unmasked(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let masks: Vec<usize> = (0..chars.len()).filter(|&i| is_mask(chars[i])).collect();
    let letters = chars.iter().filter(|c| c.is_alphabetic()).count();
    if masks.is_empty() || masks.len() > MAX_MASKS || letters < 2 || masks.len() + letters != chars.len() {
        return Vec::new();
    }
    let mut out = vec![chars];
    for &at in &masks {
        out = out
            .into_iter()
            .flat_map(|filled| {
                ('a'..='z').map(move |letter| {
                    let mut next = filled.clone();
                    next[at] = letter;
                    next
                })
            })
            .collect();
    }
    // A filling without a vowel is no reading a reader makes (`c*t` is not `cnt`), and rustrict
    // would read it as a word with its vowels dropped.
    out.into_iter()
        .filter(|c| c.iter().any(|l| "aeiouy".contains(*l)))
        .map(|c| c.into_iter().collect())
        .collect()
}

/// A word as a reader may see it: folded; with ambiguous look-alikes read the other way; with
/// digits and symbols read as letters; with repeated letters shortened; spelled out letters
/// joined; masked letters filled in.
fn readings(word: &str) -> Vec<String> {
    let base = folded(word);
    let mut out = Vec::new();
    for filled in unmasked(&base) {
        out.push(collapse_runs(&filled, 1));
        out.push(filled);
    }
    out.push(base.clone());
    for (lookalike, latin) in AMBIGUOUS_LOOKALIKES {
        if word.contains(*lookalike) {
            out.push(folded(&word.replace(*lookalike, &latin.to_string())));
        }
    }
    if let Some(joined) = spelled_out(&base) {
        out.push(joined);
    }
    let leet: String = base
        .chars()
        .map(|c| LEET.iter().find(|(from, _)| *from == c).map_or(c, |(_, to)| *to))
        .collect();
    for form in [base, leet] {
        out.push(collapse_runs(&form, 1));
        out.push(collapse_runs(&form, 2));
        out.push(form);
    }
    out.sort();
    out.dedup();
    out
}

/// Words rustrict rates as bad whose ordinary meaning is not: judging them would refuse
/// food, interjections and history ("crackers become soft", "Ho! Tom Bombadil", "the KKK",
/// "the American Nazi Party").
const ORDINARY_WORDS: &[&str] = &["cracker", "crackers", "ho", "kkk", "nazi", "nazis", "nudest"];

/// rustrict's words, with slurs it does not rate as refused added. Added to rustrict's own
/// table, not to a copy of it: the copy doubled what the filter costs every text function's
/// cold start (another 18 MB and 17 ms, measured with rustrict 0.7.39).
static WORDS: std::sync::LazyLock<&'static Trie> = std::sync::LazyLock::new(|| {
    // SAFETY: rustrict's default table may be changed only while nothing else refers to it.
    // Nothing in this program reaches rustrict but `is_refused`, which takes `WORDS` before it
    // builds a `Censor`; a LazyLock runs this once and holds every other caller until it
    // returns, and the mutable borrow ends with it.
    let words = unsafe { Trie::customize_default() };
    for slur in ["spic", "spics"] {
        words.set(slur, Type::OFFENSIVE & Type::SEVERE);
    }
    words
});

/// What may stand before a bad word in one compound (`bullshit`, `motherfucker`).
const COMPOUND_HEADS: &[&str] = &[
    "mother", "bull", "horse", "dumb", "jack", "dip", "chicken", "cluster", "smart", "lame", "fat", "ass", "cock",
    "dog", "holy", "apes", "ape", "pig", "batshit", "bat", "dick", "cum", "skank", "tit",
];

/// What may follow a bad word in one word: inflections and compound tails (`fucking`,
/// `shitty`, `fuckface`, `cocksucker`).
const TAILS: &[&str] = &[
    "s", "es", "ed", "d", "er", "ers", "ing", "ings", "in", "y", "ty", "ie", "ies", "ier", "iest", "ly", "ish", "head",
    "heads", "face", "faces", "hole", "holes", "wad", "wads", "bag", "bags", "stick", "sticks", "nut", "nuts", "wit",
    "wits", "tard", "load", "er's", "ass", "ton", "show", "storm", "bucket", "fest",
];

/// Whether rustrict refuses `candidate` as a word: its match must be the word itself, give or
/// take an inflection or a compound part. A bad word inside another word is not enough
/// ("Hitchcock", "Dijkstra", "Hoare"): that is the Scunthorpe problem.
fn is_refused(candidate: &str) -> bool {
    let word = candidate
        .strip_suffix("'s")
        .or_else(|| candidate.strip_suffix("’s"))
        .unwrap_or(candidate);
    if ORDINARY_WORDS.contains(&word) {
        return false;
    }
    // First: no `Censor` may exist while `WORDS` is being set up (see there).
    let words: &'static Trie = *WORDS;
    let (censored, analysis) = Censor::from_str(word)
        .with_trie(words)
        .with_censor_threshold(refused_language())
        .censor_and_analyze();
    if !analysis.is(refused_language()) {
        return false;
    }
    let original: Vec<char> = word.chars().collect();
    let starred: Vec<char> = censored.chars().collect();
    if starred.len() != original.len() {
        return true;
    }
    let (Some(first), Some(last)) = (
        starred.iter().position(|c| *c == '*'),
        starred.iter().rposition(|c| *c == '*'),
    ) else {
        // Refused with nothing starred: rustrict judged the whole.
        return true;
    };
    // rustrict leaves a match's first letter standing.
    let start = first.saturating_sub(1);
    let head: String = original[..start].iter().collect();
    let tail: String = original[last + 1..].iter().collect();
    (head.is_empty() || COMPOUND_HEADS.contains(&head.as_str())) && (tail.is_empty() || TAILS.contains(&tail.as_str()))
}

/// Every refused span of `text`, in order.
pub fn findings(text: &str) -> Vec<Finding> {
    let all = words(text);
    // Words repeat ("the", "a"): each is judged once per text.
    let mut judged: std::collections::HashMap<&str, bool> = std::collections::HashMap::new();
    let chars: Vec<char> = text.chars().collect();
    let span = |range: Range<usize>| Finding {
        text: chars[range.clone()].iter().collect(),
        start: range.start,
        end: range.end,
    };
    let mut found: Vec<Range<usize>> = Vec::new();
    for word in &all {
        // No letter, no word: numbers, dates, prices, times and ids are never profane.
        if !word.text.chars().any(char::is_alphabetic) {
            continue;
        }
        let judge = |text: &str| readings(text).iter().any(|r| is_refused(r));
        let refused = *judged.entry(word.text.as_str()).or_insert_with(|| {
            if word.text.chars().any(code_digit) {
                code_pieces(&word.text).any(judge)
            } else {
                judge(&word.text)
            }
        });
        if refused {
            found.push(word.chars.clone());
        }
    }
    // Letters spaced out over words: `f u c k`, `f. u. c. k`, wherever they start in a run
    // of single letters ("what a f u c k": the `a` is a word of its own). Each stretch of the
    // run up to MAX_SPELLED_LETTERS long is judged, longest first, each once per text.
    let mut spelled: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    let mut i = 0;
    while i < all.len() {
        let single = |w: &Word| w.text.chars().count() == 1;
        let mut j = i;
        while j < all.len() && single(&all[j]) {
            j += 1;
        }
        let letters: Vec<String> = all[i..j].iter().map(|w| folded(&w.text)).collect();
        let mut start = 0;
        while start + 3 <= letters.len() {
            let longest = (letters.len() - start).min(MAX_SPELLED_LETTERS);
            let hit = (3..=longest).rev().find(|&len| {
                let joined = letters[start..start + len].concat();
                *spelled.entry(joined.clone()).or_insert_with(|| is_refused(&joined))
            });
            match hit {
                Some(len) => {
                    let range = all[i + start].chars.start..all[i + start + len - 1].chars.end;
                    if !found.iter().any(|f| f.start < range.end && range.start < f.end) {
                        found.push(range);
                    }
                    start += len;
                }
                None => start += 1,
            }
        }
        i = j.max(i + 1);
    }
    found.sort_by_key(|r| r.start);
    found.into_iter().map(span).collect()
}

/// The first refused span, if any.
pub fn first_finding(text: &str) -> Option<Finding> {
    findings(text).into_iter().next()
}

/// `text` with every refused span starred out (whitespace inside a span kept), nothing else
/// changed.
pub fn censor(text: &str) -> String {
    let found = findings(text);
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            let inside = found.iter().any(|f| (f.start..f.end).contains(&i));
            if inside && !c.is_whitespace() { '*' } else { c }
        })
        .collect()
}

/// Builds rustrict's tables now (about 20 ms, otherwise paid by the first text checked): a
/// cold start does it during init.
pub fn warm_up() {
    let _ = is_refused("warm up");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slurs_rustrict_misses_are_refused_in_its_own_table() {
        for slur in ["spic", "spics", "Spics"] {
            assert!(first_finding(&format!("go home {slur}")).is_some(), "{slur}");
        }
        assert!(first_finding("a spicy dish").is_none());
    }

    #[test]
    fn a_finding_is_the_span_as_written() {
        let text = "you are a f\u{0443}cking idiot";
        let found = first_finding(text).expect("caught");
        assert_eq!(
            (found.text.as_str(), found.start, found.end),
            ("f\u{0443}cking", 10, 17)
        );
        assert_eq!(censor(text), "you are a ******* idiot");
        assert_eq!(censor("f u c k this"), "* * * * this");
        // Nothing else changes: not the numbers, not the punctuation.
        assert_eq!(censor("Order #51235979, shit!"), "Order #51235979, ****!");
    }

    #[test]
    fn obfuscations_combined_are_still_read() {
        for dodge in [
            "5h\u{0456}t",                         // leetspeak and a Cyrillic i
            "\u{FF53} \u{FF48} \u{FF49} \u{FF54}", // fullwidth, spaced out
            "f.\u{0443}.c.k",                      // dotted, with a Cyrillic u
            "SHIIIIT",                             // upper case, repeated
        ] {
            assert!(first_finding(&format!("well {dodge} then")).is_some(), "{dodge}");
        }
    }

    #[test]
    fn letters_spelled_out_after_a_one_letter_word_and_masked_letters_are_read() {
        for (text, span) in [
            ("what a f u c k you are", "f u c k"),
            ("what a s h i t day", "s h i t"),
            ("I said a b i t c h", "b i t c h"),
            ("s*it happens", "s*it"),
            ("oh f**k", "f**k"),
            ("you c#nt", "c#nt"),
        ] {
            let found = first_finding(text).unwrap_or_else(|| panic!("missed: {text}"));
            assert_eq!(found.text, span, "{text}");
        }
        // Their neighbours that are not bad words stay readable.
        for benign in [
            "I got a b c d e grade",
            "use a*b for the product",
            "the c*t scan",
            "see section a b c",
            "rated a A+",
            "plan B or c",
        ] {
            assert_eq!(first_finding(benign), None, "{benign}");
        }
    }

    #[test]
    fn a_code_digit_next_to_a_bad_word_does_not_hide_it_and_codes_stay_codes() {
        for dodge in ["fuck2 you", "shit9", "sh1t9 again", "2fuck", "8bitch8"] {
            assert!(first_finding(dodge).is_some(), "{dodge}");
        }
        for code in [
            "flight AF4926",
            "commit 7f15e3a2",
            "x86 and arm64",
            "B2B sales",
            "covid19 update",
            "class2 students",
            "Scunthorpe2026 fixtures",
            "assets8 folder",
            "h264 video",
        ] {
            assert_eq!(first_finding(code), None, "{code}");
        }
    }

    #[test]
    fn a_bad_word_inside_a_name_is_not_the_word() {
        for benign in [
            "Hitchcock's films",
            "Dijkstra wrote",
            "Hoare logic",
            "Scunthorpe United",
            "ho ho ho",
            "crackers and cheese",
        ] {
            assert_eq!(first_finding(benign), None, "{benign}");
        }
        for bad in ["bullshit", "motherfucker", "shitty", "fuckface", "cocksucker"] {
            assert!(first_finding(bad).is_some(), "{bad}");
        }
    }
}
