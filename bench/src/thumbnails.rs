//! The thumbnail pipeline (`forum_media::process`, exactly what `process-media` runs) on a
//! deterministic 4032x3024 JPEG and PNG: median wall time over several runs and peak heap
//! growth during one run. `compare_thumbnails.sh` runs Pillow and libvips on the same files.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::stats::median;
use forum_media::{self as media, MAX_UPLOAD_BYTES};
use forum_testkit::images as fixtures;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live bytes and their peak.
pub struct CountingAllocator;

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Timed runs per image (the median is reported).
    #[arg(long, default_value_t = 15)]
    runs: usize,
    /// Where to write the two source images (for the Pillow/libvips comparison).
    #[arg(long, default_value = "target/thumbnail-bench")]
    out: PathBuf,
}

/// The decode budget process-media runs with: half its `MemorySize` in template.yaml.
fn process_media_budget() -> u64 {
    let template = forum_local::template::StackTemplate::parse(forum_local::template::BUNDLED_TEMPLATE)
        .expect("the bundled template parses");
    let memory = template
        .functions
        .iter()
        .find(|f| f.binary == "process-media")
        .map(|f| f.memory_mb)
        .expect("process-media is in the template");
    media::decode_budget(memory)
}

/// The median time of `runs` calls of `work`, after one untimed call (page faults, lazy tables).
fn median_time<T>(runs: usize, mut work: impl FnMut() -> T) -> Duration {
    std::hint::black_box(work());
    let times = (0..runs)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(work());
            started.elapsed()
        })
        .collect();
    median(times)
}

fn measure(name: &str, bytes: &[u8], runs: usize, parallel: bool) {
    // The pipeline, not the upload limit, is measured: a noisy 12 MP PNG is larger than the
    // 15 MiB an upload may be.
    let limit = MAX_UPLOAD_BYTES.max(bytes.len() as u64);
    let budget = process_media_budget();
    let time = median_time(runs, || {
        media::process_with(bytes, limit, budget, parallel).expect("processes")
    });
    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let out = media::process_with(bytes, limit, budget, parallel).expect("processes");
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
    let sizes: Vec<String> = out
        .variants
        .iter()
        .map(|v| format!("{} {}x{} ({} KB)", v.name, v.width, v.height, v.bytes.len() / 1024))
        .collect();
    let threads = if parallel { "2 threads" } else { "1 thread " };
    println!(
        "{name}, {threads}: median {:.1} ms over {runs} runs, peak heap growth {:.1} MB (input {:.1} MB) -> {}",
        time.as_secs_f64() * 1000.0,
        peak as f64 / (1024.0 * 1024.0),
        bytes.len() as f64 / (1024.0 * 1024.0),
        sizes.join(", ")
    );
}

/// What no JPEG pipeline here gets below: reading every entropy-coded byte, which is serial
/// without restart markers. A decode at 1/8 scale (what `verify` runs) is that and little else:
/// one coefficient per block to transform. `compare_thumbnails.sh` times libjpeg-turbo's.
fn entropy_floor(jpeg: &[u8], runs: usize) {
    let budget = process_media_budget();
    let time = median_time(runs, || {
        media::verify(jpeg, MAX_UPLOAD_BYTES, budget).expect("verifies")
    });
    println!(
        "entropy floor, a decode at 1/8 scale (verify, 1 thread): median {:.1} ms over {runs} runs",
        time.as_secs_f64() * 1000.0
    );
}

pub fn run(args: &Args) {
    let jpeg = fixtures::photo_jpeg(4032, 3024);
    let png = fixtures::photo_png(4032, 3024);
    if std::fs::create_dir_all(&args.out).is_ok() {
        let _ = std::fs::write(args.out.join("photo-4032x3024.jpg"), &jpeg);
        let _ = std::fs::write(args.out.join("photo-4032x3024.png"), &png);
    }
    println!(
        "thumbnail pipeline (decode once, orient, strip, display + 1280/640/320); \
         with 2 threads the display image is encoded beside the thumbnails (what process-media \
         does with 2 vCPUs), with 1 thread in turn:"
    );
    for parallel in [true, false] {
        measure("JPEG 4032x3024", &jpeg, args.runs, parallel);
        measure("PNG  4032x3024", &png, args.runs.min(5), parallel);
    }
    entropy_floor(&jpeg, args.runs);
    println!("source images written to {}", args.out.display());
}
