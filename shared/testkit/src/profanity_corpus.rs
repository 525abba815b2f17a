//! The corpora the profanity filter is measured on (`forum-bench` prints the figures; a test
//! holds them to the targets of docs and README).
//!
//! - benign: dictionary words and prose (Debian's `wamerican` and `fortunes`, sampled by
//!   `scripts/build_filter_corpora.py` into `shared/testkit/corpus/`), and sentences full of numbers
//!   (prices, times, dates, order and phone numbers, ids, versions, decimals) generated here;
//! - profane: `shared/testkit/corpus/profane.txt`'s words written as people dodge filters (case,
//!   leetspeak, symbols, repeated letters, spacing, dots, zero-width characters, Cyrillic and
//!   Greek look-alikes, fullwidth forms, masked letters), each inside ordinary sentences, one of
//!   which puts a one-letter word before it ("what a f u c k ...").

/// Dictionary words.
pub fn words() -> Vec<&'static str> {
    include_str!("../corpus/words.txt")
        .lines()
        .filter(|l| !l.is_empty())
        .collect()
}

/// Dictionary words that are themselves explicit: a filter is right to refuse them.
pub const EXPLICIT_WORDS: &[&str] = &["cunnilingus", "hooker", "muff"];

/// Fortunes: quotations and jokes from the clean set.
pub fn prose() -> Vec<&'static str> {
    include_str!("../corpus/prose.txt")
        .split("\n%\n")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect()
}

/// A small deterministic generator, so the sentences are the same every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Sentences made of numbers the way people write them: 300 of them.
pub fn numeric_sentences() -> Vec<String> {
    let mut r = Lcg(20261124);
    let mut out = Vec::new();
    for i in 0..300 {
        let n = |r: &mut Lcg, below: u64| r.next(below);
        let sentence = match i % 12 {
            0 => format!("Tickets cost ${}.{:02} each", n(&mut r, 1000), n(&mut r, 100)),
            1 => format!(
                "Meet at {:02}:{:02} on 20{:02}-{:02}-{:02}",
                n(&mut r, 24),
                n(&mut r, 60),
                n(&mut r, 40),
                1 + n(&mut r, 12),
                1 + n(&mut r, 28)
            ),
            2 => format!(
                "Order #{} shipped, call {}-{:04}",
                10_000_000 + n(&mut r, 89_999_999),
                200 + n(&mut r, 800),
                n(&mut r, 10_000)
            ),
            3 => format!(
                "build {:08x} passed in {} s",
                n(&mut r, u64::from(u32::MAX)),
                n(&mut r, 1000)
            ),
            4 => format!("load {}.{:010}", n(&mut r, 10), n(&mut r, 10_000_000_000)),
            5 => format!(
                "Version {}.{}.{} fixes {} bugs ({}% fewer crashes)",
                n(&mut r, 10),
                n(&mut r, 30),
                n(&mut r, 100),
                n(&mut r, 500),
                n(&mut r, 100)
            ),
            6 => format!(
                "Call +1 ({}) {}-{:04} before {}pm",
                200 + n(&mut r, 800),
                200 + n(&mut r, 800),
                n(&mut r, 10_000),
                1 + n(&mut r, 12)
            ),
            7 => format!(
                "The {}th runner finished in {}:{:02}.{}",
                4 + n(&mut r, 90),
                n(&mut r, 60),
                n(&mut r, 60),
                n(&mut r, 10)
            ),
            8 => format!(
                "Room {}{}, floor {}, code {:06}",
                n(&mut r, 9) + 1,
                ["A", "B", "C", "D"][n(&mut r, 4) as usize],
                n(&mut r, 40),
                n(&mut r, 1_000_000)
            ),
            9 => format!(
                "Invoice {}-{:05} totals €{},{:03}.{:02}",
                2020 + n(&mut r, 10),
                n(&mut r, 100_000),
                n(&mut r, 100),
                n(&mut r, 1000),
                n(&mut r, 100)
            ),
            10 => format!(
                "Flight {}{} {} at gate {}{}",
                ["LH", "BA", "UA", "AF"][n(&mut r, 4) as usize],
                100 + n(&mut r, 9900),
                ["departs", "lands"][n(&mut r, 2) as usize],
                ["A", "B", "C"][n(&mut r, 3) as usize],
                n(&mut r, 60)
            ),
            _ => format!(
                "Coordinates {}.{:06}, -{}.{:06}; {} m up, {}x{} px",
                n(&mut r, 90),
                n(&mut r, 1_000_000),
                n(&mut r, 180),
                n(&mut r, 1_000_000),
                n(&mut r, 9000),
                100 + n(&mut r, 4000),
                100 + n(&mut r, 4000)
            ),
        };
        out.push(sentence);
    }
    out
}

/// The profane base words.
pub fn profane_words() -> Vec<&'static str> {
    include_str!("../corpus/profane.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn map_letters(word: &str, table: &[(char, &str)]) -> String {
    word.chars()
        .map(|c| {
            table
                .iter()
                .find(|(from, _)| *from == c)
                .map(|(_, to)| to.to_string())
                .unwrap_or_else(|| c.to_string())
        })
        .collect()
}

/// One way of writing a word to get it past a filter.
pub struct Obfuscation {
    pub name: &'static str,
    pub apply: fn(&str) -> String,
}

pub const OBFUSCATIONS: &[Obfuscation] = &[
    Obfuscation {
        name: "plain",
        apply: |w| w.to_string(),
    },
    Obfuscation {
        name: "capitalized",
        apply: |w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        },
    },
    Obfuscation {
        name: "upper case",
        apply: |w| w.to_uppercase(),
    },
    Obfuscation {
        name: "leetspeak",
        apply: |w| {
            map_letters(
                w,
                &[('a', "4"), ('e', "3"), ('i', "1"), ('o', "0"), ('s', "5"), ('t', "7")],
            )
        },
    },
    Obfuscation {
        name: "one digit",
        apply: |w| {
            let vowel = w.find(['a', 'e', 'i', 'o', 'u']);
            match vowel {
                Some(i) => format!(
                    "{}{}{}",
                    &w[..i],
                    match &w[i..=i] {
                        "a" => "4",
                        "e" => "3",
                        "i" => "1",
                        "o" => "0",
                        _ => "v",
                    },
                    &w[i + 1..]
                ),
                None => w.to_string(),
            }
        },
    },
    Obfuscation {
        name: "symbols",
        apply: |w| map_letters(w, &[('a', "@"), ('s', "$"), ('i', "!")]),
    },
    Obfuscation {
        name: "repeated letters",
        apply: |w| {
            map_letters(
                w,
                &[('a', "aaa"), ('e', "eee"), ('i', "iii"), ('o', "ooo"), ('u', "uuu")],
            )
        },
    },
    Obfuscation {
        name: "spaced",
        apply: |w| w.chars().map(|c| c.to_string()).collect::<Vec<_>>().join(" "),
    },
    Obfuscation {
        name: "dotted",
        apply: |w| w.chars().map(|c| c.to_string()).collect::<Vec<_>>().join("."),
    },
    Obfuscation {
        name: "zero-width",
        apply: |w| w.chars().map(|c| c.to_string()).collect::<Vec<_>>().join("\u{200B}"),
    },
    Obfuscation {
        name: "cyrillic look-alikes",
        apply: |w| {
            map_letters(
                w,
                &[
                    ('a', "а"),
                    ('e', "е"),
                    ('o', "о"),
                    ('c', "с"),
                    ('p', "р"),
                    ('x', "х"),
                    ('u', "у"),
                    ('i', "і"),
                ],
            )
        },
    },
    Obfuscation {
        name: "greek look-alikes",
        apply: |w| map_letters(w, &[('o', "ο"), ('i', "ι"), ('k', "κ"), ('t', "τ"), ('u', "υ")]),
    },
    Obfuscation {
        name: "dotted and spaced",
        apply: |w| w.chars().map(|c| c.to_string()).collect::<Vec<_>>().join(". "),
    },
    Obfuscation {
        name: "masked letter",
        // The second letter hidden: `s*it`, `f*ck`, `c*nt`.
        apply: |w| mask(w, &[1], '*'),
    },
    Obfuscation {
        name: "masked vowel",
        // The first vowel after the first letter hidden with `#`: `sh#t`, `b#tch`.
        apply: |w| match w.char_indices().skip(1).find(|(_, c)| "aeiou".contains(*c)) {
            Some((i, _)) => mask(w, &[w[..i].chars().count()], '#'),
            None => mask(w, &[1], '#'),
        },
    },
    Obfuscation {
        name: "two masked letters",
        // `f**k`, `s**t`, `c**ks`.
        apply: |w| mask(w, &[1, 2], '*'),
    },
    Obfuscation {
        name: "fullwidth",
        apply: |w| {
            w.chars()
                .map(|c| {
                    char::from_u32(c as u32 - 0x21 + 0xFF01)
                        .filter(|_| c.is_ascii_graphic())
                        .unwrap_or(c)
                })
                .collect()
        },
    },
];

/// `word` with the letters at `positions` (in characters) replaced by `with`, when the word is
/// long enough to keep a letter on each side.
fn mask(word: &str, positions: &[usize], with: char) -> String {
    let count = word.chars().count();
    if positions.iter().any(|&p| p == 0 || p + 1 >= count) {
        return word.to_string();
    }
    word.chars()
        .enumerate()
        .map(|(i, c)| if positions.contains(&i) { with } else { c })
        .collect()
}

/// The sentences a word is hidden in: plain prose, and one with a one-letter word right
/// before it, where spaced-out letters must not be read together with it.
const FRAMES: &[&str] = &["well that is {} if you ask me", "what a {} you are", "I {} it all"];

/// Each profane word under each obfuscation, inside each sentence: (obfuscation, sentence).
pub fn profane_sentences() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for word in profane_words() {
        for o in OBFUSCATIONS {
            for frame in FRAMES {
                out.push((o.name, frame.replace("{}", &(o.apply)(word))));
            }
        }
    }
    out
}

/// How a corpus fared: texts refused out of all, and a few of them.
#[derive(Debug, Default)]
pub struct Tally {
    pub refused: usize,
    pub total: usize,
    pub examples: Vec<String>,
}

impl Tally {
    pub fn rate(&self) -> f64 {
        self.refused as f64 / self.total.max(1) as f64
    }

    fn count(&mut self, refused: bool, text: &str) {
        self.total += 1;
        if refused {
            self.refused += 1;
            if self.examples.len() < 5 {
                self.examples.push(text.replace(['\n', '\t'], " "));
            }
        }
    }
}

/// The filter's figures on every corpus, through the same cleaning and checking as the API.
#[derive(Debug, Default)]
pub struct Report {
    pub numeric: Tally,
    pub prose: Tally,
    /// Dictionary words, the explicit ones ([`EXPLICIT_WORDS`]) left out.
    pub words: Tally,
    /// Profane sentences caught (`refused` is the catch).
    pub profane: Tally,
    /// Misses per obfuscation.
    pub missed_by_obfuscation: Vec<(&'static str, usize)>,
    /// Microseconds to check a 2,000-character comment (mean of 50).
    pub micros_per_2000_chars: f64,
    /// Microseconds for the slowest text the filter reads: as many masked words as a text may
    /// hold, each with two masks (2 x 26^2 fillings), none of them bad (mean of 5).
    pub micros_worst_masked: f64,
    /// Microseconds for 2,000 characters of single letters spaced out (`a b c d ...`).
    pub micros_spaced_letters: f64,
}

fn refused(text: &str) -> bool {
    let rules = forum_domain::validate::TextRules {
        field: "content",
        max_chars: usize::MAX,
        profanity: forum_domain::validate::ProfanityMode::Refuse,
    };
    matches!(
        forum_domain::validate::clean_text(text, rules),
        Err(forum_domain::validate::TextError::Profanity { .. })
    )
}

/// Runs every corpus through the filter.
pub fn measure() -> Report {
    let mut report = Report::default();
    for s in numeric_sentences() {
        report.numeric.count(refused(&s), &s);
    }
    for p in prose() {
        report.prose.count(refused(p), p);
    }
    for w in words().into_iter().filter(|w| !EXPLICIT_WORDS.contains(w)) {
        report.words.count(refused(w), w);
    }
    let mut missed: Vec<(&'static str, usize)> = OBFUSCATIONS.iter().map(|o| (o.name, 0)).collect();
    for (obfuscation, sentence) in profane_sentences() {
        let caught = refused(&sentence);
        report.profane.total += 1;
        if caught {
            report.profane.refused += 1;
        } else {
            if report.profane.examples.len() < 5 {
                report.profane.examples.push(sentence.clone());
            }
            if let Some(m) = missed.iter_mut().find(|(name, _)| *name == obfuscation) {
                m.1 += 1;
            }
        }
    }
    report.missed_by_obfuscation = missed.into_iter().filter(|(_, n)| *n > 0).collect();
    let comment: String = prose().join(" ").chars().take(2000).collect();
    let started = std::time::Instant::now();
    for _ in 0..50 {
        std::hint::black_box(forum_domain::profanity::findings(&comment));
    }
    report.micros_per_2000_chars = started.elapsed().as_secs_f64() * 1e6 / 50.0;
    let masked: String = (0..forum_domain::profanity::MAX_MASKED_WORDS)
        .map(|i| format!("q**{}x", char::from(b'a' + i as u8)))
        .collect::<Vec<_>>()
        .join(" ");
    let started = std::time::Instant::now();
    for _ in 0..5 {
        std::hint::black_box(refused(&masked));
    }
    report.micros_worst_masked = started.elapsed().as_secs_f64() * 1e6 / 5.0;
    let letters: String = (0..1000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .map(|c| format!("{c} "))
        .collect();
    let started = std::time::Instant::now();
    for _ in 0..5 {
        std::hint::black_box(forum_domain::profanity::findings(&letters));
    }
    report.micros_spaced_letters = started.elapsed().as_secs_f64() * 1e6 / 5.0;
    report
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = |f: &mut std::fmt::Formatter<'_>, name: &str, t: &Tally, target: &str| {
            writeln!(
                f,
                "  {name:<28} {:>4} of {:>4} refused ({:.2} %; target {target}){}",
                t.refused,
                t.total,
                100.0 * t.rate(),
                if t.examples.is_empty() {
                    String::new()
                } else {
                    format!(": {:?}", t.examples)
                }
            )
        };
        writeln!(f, "profanity filter (rustrict, judged per word):")?;
        line(f, "numeric sentences", &self.numeric, "0")?;
        line(f, "prose (fortunes)", &self.prose, "<= 0.5 %")?;
        line(f, "dictionary words", &self.words, "<= 0.3 %")?;
        writeln!(
            f,
            "  {:<28} {:>4} of {:>4} caught  ({:.2} %; target >= 95 %){}",
            "obfuscated profanity",
            self.profane.refused,
            self.profane.total,
            100.0 * self.profane.rate(),
            if self.missed_by_obfuscation.is_empty() {
                String::new()
            } else {
                format!("; missed: {:?}", self.missed_by_obfuscation)
            }
        )?;
        writeln!(
            f,
            "  check of a 2,000-character comment: {:.0} µs (target < 1,000)",
            self.micros_per_2000_chars
        )?;
        writeln!(
            f,
            "  worst case, {} words with two masked letters: {:.0} µs",
            forum_domain::profanity::MAX_MASKED_WORDS,
            self.micros_worst_masked
        )?;
        write!(
            f,
            "  worst case, 2,000 characters of spaced-out letters: {:.0} µs",
            self.micros_spaced_letters
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_meets_its_targets_on_the_corpora() {
        // Printed with `cargo test -p forum-testkit the_filter_meets -- --nocapture`; forum-bench prints it too.
        let report = measure();
        println!("{report}");
        assert_eq!(report.numeric.refused, 0, "{:?}", report.numeric.examples);
        assert!(report.prose.rate() <= 0.005, "{:?}", report.prose.examples);
        assert!(report.words.rate() <= 0.003, "{:?}", report.words.examples);
        assert!(report.profane.rate() >= 0.95, "{:?}", report.profane.examples);
    }
}
