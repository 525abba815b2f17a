//! The image pipeline under a counting allocator (every thread's allocations, so the JPEG
//! decoder's workers count too): what a decode or processing really allocates stays within the
//! bound it was judged by before it began, and mutated images are refused or processed without
//! a panic and within budget.
//!
//! The mutation loop starts from `tests/corpus/media/` (seeds of every coding, and every input
//! that once broke something): each run replays the corpus, then mutates it for a bounded time
//! (`FORUM_FUZZ_SECONDS`, default 15; `FORUM_FUZZ_SEED` to vary the sequence). An input that
//! panics, overspends or produces a broken output is written to the target directory and
//! fails the test: add it to the corpus once fixed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use forum_media::{self as media, MediaError, Probe};
use forum_testkit::images::{self as fixtures, JpegCoding};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // A moving realloc holds both blocks for a moment.
            grew(new_size);
            LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        }
        new
    }
}

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::SeqCst) + size;
    PEAK.fetch_max(live, Ordering::SeqCst);
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Measurements need the process to themselves: one test measures at a time.
static MEASURING: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    MEASURING.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `work`, returning its result and the most it had allocated at once.
fn peak_of<T>(work: impl FnOnce() -> T) -> (T, u64) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let result = work();
    let peak = PEAK.load(Ordering::SeqCst).saturating_sub(base);
    (result, peak as u64)
}

/// Keeps a table for CI's log (a passing test's output is captured).
fn keep_figures(name: &str, table: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("figures");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(name), table);
}

const MB: u64 = 1024 * 1024;
/// What a bound leaves out and the allocator still sees: Huffman and quantization tables,
/// row buffers, the inflate window, thread stacks' bookkeeping.
const SLACK: u64 = 2 * MB;

fn coding(components: u8, progressive: bool, subsampled: bool) -> JpegCoding {
    JpegCoding {
        components,
        progressive,
        subsampled,
        restart_interval: 0,
    }
}

/// Every coding the pipeline accepts, at a size where the bounds matter.
fn codings() -> Vec<(String, Vec<u8>)> {
    let (w, h) = (1600u16, 1200u16);
    let mut images = Vec::new();
    for (components, progressive, subsampled) in [
        (3, false, true),
        (3, false, false),
        (3, true, true),
        (3, true, false),
        (1, false, false),
        (1, true, false),
        (4, false, false),
        (4, true, false),
    ] {
        images.push((
            format!(
                "JPEG {} {}{}",
                match components {
                    1 => "grey",
                    4 => "CMYK",
                    _ => "colour",
                },
                if progressive { "progressive" } else { "baseline" },
                if subsampled { " 4:2:0" } else { "" }
            ),
            fixtures::jpeg_coded(w, h, coding(components, progressive, subsampled)),
        ));
    }
    let (w, h) = (u32::from(w), u32::from(h));
    for (color, depth, alpha, name) in [
        (png::ColorType::Rgb, png::BitDepth::Eight, false, "PNG RGB"),
        (png::ColorType::Rgba, png::BitDepth::Eight, false, "PNG RGBA"),
        (png::ColorType::Rgba, png::BitDepth::Sixteen, false, "PNG RGBA 16-bit"),
        (png::ColorType::Grayscale, png::BitDepth::Eight, false, "PNG grey"),
        (png::ColorType::Grayscale, png::BitDepth::One, false, "PNG grey 1-bit"),
        (
            png::ColorType::GrayscaleAlpha,
            png::BitDepth::Eight,
            false,
            "PNG grey+alpha",
        ),
        (png::ColorType::Indexed, png::BitDepth::Four, false, "PNG palette"),
        (png::ColorType::Indexed, png::BitDepth::Eight, true, "PNG palette+tRNS"),
    ] {
        images.push((name.to_string(), fixtures::png_coded(w, h, color, depth, alpha)));
    }
    // Larger than the display image: the resize from the decoded image (for transparency,
    // through a premultiplied copy) is part of the cost.
    images.push((
        "JPEG colour 4200x2800".into(),
        fixtures::jpeg_coded(4200, 2800, coding(3, false, true)),
    ));
    images.push((
        "PNG RGBA 2600x1400".into(),
        fixtures::png_coded(2600, 1400, png::ColorType::Rgba, png::BitDepth::Eight, false),
    ));
    images
}

#[test]
fn what_a_decode_allocates_stays_within_the_bound_it_was_judged_by() {
    let _only = exclusive();
    let unlimited = u64::MAX;
    let mut table = format!(
        "{:<30} {:>9} {:>9} {:>6}  {:>9} {:>9} {:>6}\n",
        "image (1600x1200 unless said)", "verify", "bound", "ratio", "process", "bound", "ratio"
    );
    let mut over = Vec::new();
    for (name, bytes) in codings() {
        let probe = media::probe(&bytes, media::MAX_UPLOAD_BYTES).expect("a valid image");
        let verify_bound = match probe.media_type {
            // PNGs are verified row by row.
            media::MediaType::Png => 0,
            media::MediaType::Jpeg => probe.decode_bytes(1),
        };
        let (verified, verify_peak) = peak_of(|| media::verify(&bytes, media::MAX_UPLOAD_BYTES, unlimited));
        verified.expect("verifies");
        let process_bound = probe.processing_bytes();
        let mut process_peak = 0;
        for parallel in [false, true] {
            let (processed, peak) =
                peak_of(|| media::process_with(&bytes, media::MAX_UPLOAD_BYTES, unlimited, parallel));
            processed.expect("processes");
            process_peak = process_peak.max(peak);
        }
        let ratio = |peak: u64, bound: u64| peak as f64 / (bound + SLACK) as f64;
        let _ = writeln!(
            table,
            "{name:<30} {:>7.1}MB {:>7.1}MB {:>6.2}  {:>7.1}MB {:>7.1}MB {:>6.2}",
            verify_peak as f64 / MB as f64,
            verify_bound as f64 / MB as f64,
            ratio(verify_peak, verify_bound),
            process_peak as f64 / MB as f64,
            process_bound as f64 / MB as f64,
            ratio(process_peak, process_bound),
        );
        if verify_peak > verify_bound + SLACK {
            over.push(format!("{name}: verify allocated {verify_peak}, bound {verify_bound}"));
        }
        if process_peak > process_bound + SLACK {
            over.push(format!(
                "{name}: process allocated {process_peak}, bound {process_bound}"
            ));
        }
    }
    println!("{table}");
    keep_figures("decode-bounds.txt", &table);
    assert!(
        over.is_empty(),
        "allocations beyond the bound judged: {over:#?}\n{table}"
    );
}

#[test]
fn an_image_over_budget_is_refused_before_anything_is_allocated() {
    let _only = exclusive();
    // The attack: 7071x7071 flat grey, progressive, 4:4:4, under the pixel cap; its decode
    // would hold 300 MB of coefficients. Against upload-media's budget:
    let budget = media::decode_budget(256);
    let bomb = fixtures::progressive_jpeg(7071, 7071, 3);
    assert!(
        (bomb.len() as u64) < media::MAX_DIRECT_UPLOAD_BYTES,
        "{} bytes",
        bomb.len()
    );
    let (refused, peak) = peak_of(|| media::verify(&bomb, media::MAX_DIRECT_UPLOAD_BYTES, budget));
    assert!(
        matches!(refused, Err(MediaError::TooMuchMemory(7071, 7071, ..))),
        "{refused:?}"
    );
    // Only the decoder's tables and header buffers: nothing in proportion to the image.
    assert!(peak < 4 * MB, "refusing allocated {peak} bytes");
    // process-media's budget takes it, within its bound.
    let probe: Probe = media::probe(&bomb, media::MAX_UPLOAD_BYTES).expect("a valid header");
    let (processed, peak) = peak_of(|| media::process(&bomb, media::MAX_UPLOAD_BYTES, media::decode_budget(3008)));
    processed.expect("process-media's budget covers it");
    assert!(
        peak <= probe.processing_bytes() + SLACK,
        "{peak} > {}",
        probe.processing_bytes()
    );
    println!(
        "7071x7071 progressive: refused at {} MB, processed in {} MB (bound {} MB)",
        budget / MB,
        peak / MB,
        probe.processing_bytes() / MB
    );

    // Metadata that inflates to 260 MB is never inflated.
    for kind in [b"iCCP", b"zTXt", b"iTXt"] {
        let bomb = fixtures::png_with_chunk_bomb(kind, 260 * 1024 * 1024);
        let (outcome, peak) = peak_of(|| {
            media::verify(&bomb, media::MAX_UPLOAD_BYTES, budget)?;
            media::process(&bomb, media::MAX_UPLOAD_BYTES, budget)
        });
        outcome.unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(kind)));
        assert!(peak < 4 * MB, "{}: {peak} bytes", String::from_utf8_lossy(kind));
    }
}

// ---- the mutation loop ----

/// xorshift64*: deterministic, so a run can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/media")
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("the corpus directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, std::fs::read(&p).expect("a corpus file"))
        })
        .collect()
}

/// Interesting values for a byte or a big-endian u16 (JPEG and PNG headers are big-endian).
const BYTES: [u8; 8] = [0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF, 0x08, 0x10];
const WORDS: [u16; 8] = [0x0000, 0x0001, 0x7FFF, 0x8000, 0xFFFF, 0x1B9F, 0x4E20, 0x0100];

fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        if out.len() < 4 {
            break;
        }
        let at = rng.below(out.len());
        match rng.below(8) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out[at] = BYTES[rng.below(BYTES.len())],
            2 if at + 2 <= out.len() => {
                out[at..at + 2].copy_from_slice(&WORDS[rng.below(WORDS.len())].to_be_bytes());
            }
            3 => {
                let len = rng.below(64).min(out.len() - at);
                out.drain(at..at + len);
            }
            4 => {
                let from = rng.below(out.len());
                let len = rng.below(256).min(out.len() - from);
                let chunk = out[from..from + len].to_vec();
                out.splice(at..at, chunk);
            }
            5 if !other.is_empty() => {
                // Splice in part of another file.
                let from = rng.below(other.len());
                let len = rng.below(512).min(other.len() - from);
                let end = (at + len).min(out.len());
                out.splice(at..end, other[from..from + len].iter().copied());
            }
            6 => out.truncate(at.max(2)),
            _ => out[at] = rng.next() as u8,
        }
    }
    // Keep the end markers and PNG checksums right most of the time, so mutants reach the
    // decoders rather than the first structural check.
    if rng.below(4) != 0 {
        repair(&mut out, input);
    }
    out
}

/// Restores the end marker the original had and recomputes every PNG chunk's CRC.
fn repair(out: &mut Vec<u8>, original: &[u8]) {
    if original.starts_with(b"\x89PNG\r\n\x1a\n") {
        const IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];
        if !out.ends_with(&IEND) {
            out.extend_from_slice(&IEND);
        }
        let mut at = 8;
        while at + 12 <= out.len() {
            let length = u32::from_be_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]) as usize;
            let Some(end) = at.checked_add(8 + length).filter(|end| end + 4 <= out.len()) else {
                break;
            };
            let crc = crc32(&out[at + 4..end]);
            out[end..end + 4].copy_from_slice(&crc.to_be_bytes());
            at = end + 4;
        }
    } else if !out.ends_with(&[0xFF, 0xD9]) {
        out.extend_from_slice(&[0xFF, 0xD9]);
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The budget mutants run under: upload-media's.
fn fuzz_budget() -> u64 {
    media::decode_budget(256)
}

/// Whether the pipeline accepted `input`, or what is wrong with how it handled it.
fn judge(input: &[u8]) -> Result<bool, String> {
    let budget = fuzz_budget();
    let panics_before = PANICS.load(Ordering::SeqCst);
    let (outcome, peak) = peak_of(|| {
        JUDGING.with(|judging| judging.set(true));
        let outcome = std::panic::catch_unwind(|| {
            let verified = media::verify(input, media::MAX_UPLOAD_BYTES, budget);
            let processed = media::process(input, media::MAX_UPLOAD_BYTES, budget);
            (verified, processed)
        });
        JUDGING.with(|judging| judging.set(false));
        outcome
    });
    if PANICS.load(Ordering::SeqCst) != panics_before {
        return Err("panicked".into());
    }
    let Ok((verified, processed)) = outcome else {
        return Err("panicked".into());
    };
    if peak > budget + SLACK {
        return Err(format!("allocated {} MB, budget {} MB", peak / MB, budget / MB));
    }
    match (&verified, &processed) {
        (Ok(_), Ok(out)) => {
            for variant in &out.variants {
                match image::load_from_memory(&variant.bytes) {
                    Ok(decoded) if (decoded.width(), decoded.height()) == (variant.width, variant.height) => {}
                    Ok(decoded) => {
                        return Err(format!(
                            "{} is {}x{}, said {}x{}",
                            variant.name,
                            decoded.width(),
                            decoded.height(),
                            variant.width,
                            variant.height
                        ));
                    }
                    Err(e) => return Err(format!("{} does not decode: {e}", variant.name)),
                }
            }
            Ok(true)
        }
        // Verification is the lighter check: whatever it refuses, processing refuses too.
        (Err(refused), Ok(_)) => Err(format!("verify refused ({refused}) what process accepted")),
        _ => Ok(false),
    }
}

static PANICS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static JUDGING: Cell<bool> = const { Cell::new(false) };
}
type PanicHook = dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static;

#[test]
fn mutated_images_are_refused_or_processed_within_budget_and_never_panic() {
    let _only = exclusive();
    let corpus = corpus();
    assert!(corpus.len() >= 10, "the seed corpus is in {}", corpus_dir().display());
    // Panics are counted; those of the pipeline under judgement are not printed (each is a
    // finding, reported below), any other (the test's own) still is.
    let previous_hook: Arc<PanicHook> = Arc::from(std::panic::take_hook());
    let printing_hook = Arc::clone(&previous_hook);
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        if !JUDGING.with(Cell::get) {
            printing_hook(info);
        }
    }));
    let mut findings = Vec::new();
    for (name, bytes) in &corpus {
        if let Err(problem) = judge(bytes) {
            findings.push(format!("corpus {name}: {problem}"));
        }
    }
    let seconds = std::env::var("FORUM_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let seed = std::env::var("FORUM_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_F0E7_u64);
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let (mut runs, mut accepted) = (0u64, 0u64);
    let findings_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("media-fuzz-findings");
    while started.elapsed() < Duration::from_secs(seconds) && findings.len() < 5 {
        let (name, input) = &corpus[rng.below(corpus.len())];
        let (_, other) = &corpus[rng.below(corpus.len())];
        let mutant = mutate(&mut rng, input, other);
        runs += 1;
        match judge(&mutant) {
            Err(problem) => {
                let _ = std::fs::create_dir_all(&findings_dir);
                let path = findings_dir.join(format!("{name}-{runs}.bin"));
                let _ = std::fs::write(&path, &mutant);
                findings.push(format!("a mutant of {name} {problem}: {}", path.display()));
            }
            Ok(true) => accepted += 1,
            Ok(false) => {}
        }
    }
    drop(std::panic::take_hook());
    std::panic::set_hook(Box::new(move |info| previous_hook(info)));
    let summary = format!(
        "mutation loop: seed {seed}, {runs} mutants of {} corpus files in {:.1} s, {accepted} accepted, {} findings\n",
        corpus.len(),
        started.elapsed().as_secs_f64(),
        findings.len()
    );
    println!("{summary}");
    keep_figures("media-fuzz.txt", &summary);
    assert!(findings.is_empty(), "{findings:#?}");
    assert!(runs >= 100, "too few mutants ({runs}) to mean anything");
}

/// Writes the seed corpus (run once, with `--ignored`; the files are committed).
#[test]
#[ignore = "writes tests/corpus/media; run by hand when the seeds change"]
fn write_seed_corpus() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).expect("the corpus directory");
    let mut seeds: Vec<(&str, Vec<u8>)> = vec![
        ("baseline-420.jpg", fixtures::jpeg_coded(64, 48, coding(3, false, true))),
        (
            "baseline-444.jpg",
            fixtures::jpeg_coded(48, 64, coding(3, false, false)),
        ),
        (
            "progressive-420.jpg",
            fixtures::jpeg_coded(64, 48, coding(3, true, true)),
        ),
        (
            "progressive-444.jpg",
            fixtures::jpeg_coded(40, 40, coding(3, true, false)),
        ),
        (
            "progressive-grey.jpg",
            fixtures::jpeg_coded(40, 30, coding(1, true, false)),
        ),
        (
            "baseline-grey.jpg",
            fixtures::jpeg_coded(30, 40, coding(1, false, false)),
        ),
        ("cmyk.jpg", fixtures::jpeg_coded(32, 32, coding(4, false, false))),
        (
            "restarts.jpg",
            fixtures::jpeg_coded(
                64,
                48,
                JpegCoding {
                    restart_interval: 2,
                    ..coding(3, false, true)
                },
            ),
        ),
        ("exif-rotated.jpg", fixtures::jpeg_with_exif(48, 32, 6)),
        (
            "rgb.png",
            fixtures::png_coded(40, 30, png::ColorType::Rgb, png::BitDepth::Eight, false),
        ),
        (
            "rgba16.png",
            fixtures::png_coded(30, 20, png::ColorType::Rgba, png::BitDepth::Sixteen, false),
        ),
        (
            "grey1.png",
            fixtures::png_coded(33, 17, png::ColorType::Grayscale, png::BitDepth::One, false),
        ),
        (
            "grey-alpha.png",
            fixtures::png_coded(20, 20, png::ColorType::GrayscaleAlpha, png::BitDepth::Eight, false),
        ),
        (
            "palette-trns.png",
            fixtures::png_coded(25, 25, png::ColorType::Indexed, png::BitDepth::Two, true),
        ),
        ("iccp-bomb.png", fixtures::png_with_chunk_bomb(b"iCCP", 1024 * 1024)),
        ("trailing-zlib.png", fixtures::png_with_trailing_data(16, 16, 4096)),
    ];
    seeds.sort_by_key(|(name, _)| *name);
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).expect("writes");
    }
}
