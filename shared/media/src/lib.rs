//! Images: what is accepted, and the processing pipeline (pure, no AWS): judge the content,
//! refuse bombs before decoding, decode once, orient, strip metadata, resize, encode.
//!
//! - Accepted: JPEG and PNG, judged by content: magic bytes, structure (nothing after the end
//!   marker, so no polyglots), header limits, and a real decode. Never by name or declared type.
//! - Output: a sanitized `display` image and thumbnails bounded by [`THUMBNAIL_SIZES`], in the
//!   input's format. The display image is the decoded image bounded by [`DISPLAY_MAX`]: for a
//!   large photo, its longest side lands between 1280 and 2048 (the DCT scale decides). Re-encoding from pixels drops every
//!   byte of metadata (EXIF, GPS, XMP, ICC, text chunks); EXIF orientation is applied first.
//! - JPEGs are decoded once with DCT scaling (jpeg-decoder): at the smallest power-of-two
//!   reduction that still covers the largest thumbnail, so a 12 MP photo never exists at full
//!   size in memory.

use forum_domain::limits;
use std::io::Cursor;

use fast_image_resize::images::Image as ResizeImage;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;
use image::metadata::Orientation;

pub use forum_domain::model::MediaType;

/// Largest upload through a presigned URL.
pub const MAX_UPLOAD_BYTES: u64 = limits::PRESIGNED_UPLOAD_BYTES.value;
/// Largest upload through `POST /upload/`: Lambda's 6 MB request limit, after base64, bounds it.
pub const MAX_DIRECT_UPLOAD_BYTES: u64 = limits::DIRECT_UPLOAD_BYTES.value;
/// Largest image, in pixels, accepted: checked from the header, before any decoding.
pub const MAX_PIXELS: u64 = limits::IMAGE_PIXELS.value;
/// Largest side, in pixels.
pub const MAX_SIDE: u32 = limits::IMAGE_SIDE.u32();
/// Longest side of the sanitized display image.
pub const DISPLAY_MAX: u32 = 2048;
/// Longest side of each thumbnail (never upscaled).
pub const THUMBNAIL_SIZES: [u32; 3] = [1280, 640, 320];
/// JPEG quality of every output.
const JPEG_QUALITY: u8 = 85;

/// Why an image was refused. Each maps to a clear API error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("only JPEG and PNG images are accepted (judged by content)")]
    UnsupportedType,
    #[error("the file is {0} bytes; the limit is {1}")]
    TooLarge(u64, u64),
    #[error("the image is {0}x{1} pixels; the limit is {MAX_PIXELS} pixels and {MAX_SIDE} per side")]
    TooManyPixels(u32, u32),
    #[error(
        "the image is {0}x{1} pixels of {2} bytes each: decoding it needs {3} MB, more than the {4} MB this function may spend"
    )]
    TooMuchMemory(u32, u32, u64, u64, u64),
    #[error("the image is corrupt or truncated: {0}")]
    Corrupt(String),
}

/// What a function's process holds besides the image being decoded: the runtime and its
/// clients (about 20 MB), the request or downloaded object and its copies (a 4 MB direct
/// upload arrives as 5.6 MB of base64 in a JSON event; a presigned one is read whole, 15 MB).
/// Measured by `functions/tests/lambda/memory.rs`.
pub const PROCESS_RESERVE_MB: u64 = limits::DECODE_RESERVE_MB.value;

/// The bytes decoding and processing may allocate in a function of `memory_mb` megabytes
/// (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, which Lambda sets, and forum-local from the template):
/// the whole process stays within half of its memory, so the image gets that half less
/// [`PROCESS_RESERVE_MB`]. Without the variable the budget is small, never generous.
pub fn decode_budget(memory_mb: u64) -> u64 {
    (memory_mb / 2).saturating_sub(PROCESS_RESERVE_MB) * 1024 * 1024
}

fn corrupt(e: impl std::fmt::Display) -> MediaError {
    MediaError::Corrupt(e.to_string())
}

/// Structure: a JPEG ends at its EOI marker and a PNG at its IEND chunk; anything after
/// (a ZIP appended to make a polyglot, a second file) or missing (truncation) is refused.
fn check_structure(kind: MediaType, bytes: &[u8]) -> Result<(), MediaError> {
    match kind {
        MediaType::Jpeg => {
            if !bytes.ends_with(&[0xFF, 0xD9]) {
                return Err(MediaError::Corrupt(
                    "the JPEG does not end with its end-of-image marker".into(),
                ));
            }
        }
        MediaType::Png => {
            // IEND: length 0, type "IEND", CRC AE 42 60 82.
            const IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];
            if !bytes.ends_with(&IEND) {
                return Err(MediaError::Corrupt("the PNG does not end with its IEND chunk".into()));
            }
        }
    }
    Ok(())
}

fn check_pixels(width: u32, height: u32) -> Result<(), MediaError> {
    if width == 0 || height == 0 {
        return Err(MediaError::Corrupt("the image has no pixels".into()));
    }
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(MediaError::TooManyPixels(width, height));
    }
    Ok(())
}

/// How an image is coded, as far as what its decode allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    /// A JPEG: its components (1 grey, 3 colour, 4 CMYK), the 8x8 blocks they hold in all
    /// (each component at its own sampling, padded to whole MCUs), and whether it is
    /// progressive. Either way its decode may hold every coefficient of the whole image (64 of
    /// 2 bytes per block), whatever the scale of the output: a baseline decode hands rows of
    /// them to the decoder's threads through an unbounded queue, which holds them all when
    /// those threads fall behind (seen in the allocation test, and likely on Lambda's
    /// fractional vCPUs). A progressive decode keeps them all until its last scan and then
    /// queues a copy of each finished row, so when its threads fall behind it holds them twice
    /// (the allocation test measured 1.3x once its worker thread was starved on a loaded CI).
    Jpeg {
        components: u8,
        blocks: u64,
        progressive: bool,
    },
    /// A PNG: the bytes per pixel of its decoded rows (palettes and low bit depths expanded,
    /// 16-bit samples reduced to 8).
    Png { bytes_per_pixel: u8 },
}

/// How many times over a progressive JPEG's scans may code its coefficients: libjpeg's
/// default script codes them 2.3-3 times (successive approximation refines each band), and
/// mozjpeg's optimised scripts at most 3.98 (luma at four bit levels).
const MAX_PROGRESSIVE_PASSES: u64 = limits::JPEG_PROGRESSIVE_PASSES.value;
/// Scans a JPEG may have: libjpeg's default progressive script has 10.
const MAX_JPEG_SCANS: usize = limits::JPEG_SCANS.value as usize;

/// One component of a JPEG frame, as its scans address it.
struct JpegComponent {
    id: u8,
    /// Its 8x8 blocks as an interleaved scan codes them (padded to whole MCUs).
    mcu_blocks: u64,
    /// Its 8x8 blocks as a scan of it alone codes them (its own size, rounded up to blocks).
    own_blocks: u64,
}

/// Walks a JPEG's segments to its end and checks what its scans ask of a decoder against its
/// frame, before anything is decoded; answers the frame's blocks (as the decoder allocates
/// them). jpeg-decoder decodes every scan it is given and reads zeros where a scan's data runs
/// out, so a file of a few hundred bytes can be a 50 MP frame with a scan repeated a hundred
/// times: seconds of CPU each (docs/performance.md, "Hostile JPEGs"). So:
/// - a sequential frame codes each component in one scan, as the standard says;
/// - a progressive frame's scans code its coefficients at most [`MAX_PROGRESSIVE_PASSES`]
///   times, in at most [`MAX_JPEG_SCANS`] scans;
/// - a scan that codes every block it covers (a sequential scan: a DC code and at least an
///   end-of-block code each, so 2 bits; a progressive DC scan: 1 bit each) carries at least
///   that many bits: less is a truncated or hollow file, the rest of which would be zeros.
fn jpeg_structure(bytes: &[u8], width: u32, height: u32) -> Result<u64, MediaError> {
    let missing = || MediaError::Corrupt("the JPEG's frame header could not be read".into());
    let mut frame: Option<(Vec<JpegComponent>, bool)> = None;
    let mut scans = 0usize;
    // Coefficients the scans code (blocks x band width), and sequential scans per component.
    let mut coded = 0u64;
    let mut sequential_scans: Vec<u8> = Vec::new();
    let mut at = 2; // after SOI
    loop {
        // Markers may be preceded by fill bytes (0xFF).
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let Some(&[0xFF, marker]) = bytes.get(at..at + 2) else {
            return Err(missing());
        };
        at += 2;
        if marker == 0xD9 {
            break; // EOI
        }
        if matches!(marker, 0x01 | 0xD0..=0xD7) {
            continue; // no length
        }
        let Some(&[high, low]) = bytes.get(at..at + 2) else {
            return Err(missing());
        };
        let length = usize::from(u16::from_be_bytes([high, low]));
        let segment = bytes.get(at + 2..at + length).ok_or_else(missing)?;
        at += length;
        match marker {
            0xC0..=0xC3 => {
                if frame.is_some() {
                    return Err(MediaError::Corrupt("the JPEG has more than one frame".into()));
                }
                // P, Y, X, Nf, then Nf x (id, H<<4|V, Tq).
                let count = usize::from(*segment.get(5).ok_or_else(missing)?);
                let sampling: Vec<(u8, u32, u32)> = segment
                    .get(6..6 + 3 * count)
                    .ok_or_else(missing)?
                    .chunks_exact(3)
                    .map(|c| (c[0], u32::from(c[1] >> 4).max(1), u32::from(c[1] & 0x0F).max(1)))
                    .collect();
                let h_max = sampling.iter().map(|s| s.1).max().ok_or_else(missing)?;
                let v_max = sampling.iter().map(|s| s.2).max().ok_or_else(missing)?;
                let mcus_wide = u64::from(width.div_ceil(h_max * 8));
                let mcus_high = u64::from(height.div_ceil(v_max * 8));
                let components = sampling
                    .iter()
                    .map(|&(id, h, v)| JpegComponent {
                        id,
                        mcu_blocks: mcus_wide * u64::from(h) * mcus_high * u64::from(v),
                        own_blocks: u64::from((width * h).div_ceil(h_max).div_ceil(8))
                            * u64::from((height * v).div_ceil(v_max).div_ceil(8)),
                    })
                    .collect();
                frame = Some((components, marker == 0xC2));
            }
            0xDA => {
                let (components, progressive) = frame
                    .as_ref()
                    .ok_or_else(|| MediaError::Corrupt("the JPEG has scan data before its frame header".into()))?;
                scans += 1;
                if scans > MAX_JPEG_SCANS {
                    return Err(MediaError::Corrupt(format!(
                        "the JPEG has more than {MAX_JPEG_SCANS} scans"
                    )));
                }
                // Ns, Ns x (id, tables), Ss, Se, Ah<<4|Al.
                let count = usize::from(*segment.first().ok_or_else(missing)?);
                let ids = segment.get(1..1 + 2 * count).ok_or_else(missing)?;
                let (start, end) = match segment.get(1 + 2 * count..4 + 2 * count) {
                    Some(&[start, end, _]) => (start, end),
                    _ => return Err(missing()),
                };
                let mut blocks = 0u64;
                for pair in ids.chunks_exact(2) {
                    let component = components
                        .iter()
                        .find(|c| c.id == pair[0])
                        .ok_or_else(|| MediaError::Corrupt("a JPEG scan names a component its frame has not".into()))?;
                    blocks += if count == 1 {
                        component.own_blocks
                    } else {
                        component.mcu_blocks
                    };
                    if !progressive {
                        if sequential_scans.contains(&pair[0]) {
                            return Err(MediaError::Corrupt(
                                "a component of the JPEG is coded in more than one scan".into(),
                            ));
                        }
                        sequential_scans.push(pair[0]);
                    }
                }
                let band = if *progressive {
                    u64::from(end.min(63).saturating_sub(start)) + 1
                } else {
                    64
                };
                coded += blocks * band;
                // The scan's entropy-coded data runs to the next marker that is not a restart.
                let data_start = at;
                while let Some(found) = bytes.get(at..).and_then(|rest| rest.iter().position(|&b| b == 0xFF)) {
                    at += found;
                    match bytes.get(at + 1) {
                        Some(0x00 | 0xD0..=0xD7) => at += 2, // a stuffed 0xFF, a restart
                        _ => break,
                    }
                }
                let bits_needed = match (*progressive, start) {
                    (false, _) => 2 * blocks,
                    (true, 0) => blocks,
                    // An AC band may end every block at once (end-of-band runs).
                    (true, _) => 0,
                };
                if ((at - data_start) as u64) * 8 < bits_needed {
                    return Err(MediaError::Corrupt(
                        "a scan holds fewer bits than its blocks take (the file is cut short or hollow)".into(),
                    ));
                }
            }
            _ => {}
        }
    }
    let (components, progressive) = frame.ok_or_else(missing)?;
    let blocks: u64 = components.iter().map(|c| c.mcu_blocks).sum();
    if scans == 0 {
        return Err(MediaError::Corrupt("the JPEG has no scans".into()));
    }
    if progressive && coded > MAX_PROGRESSIVE_PASSES * 64 * blocks {
        return Err(MediaError::Corrupt(format!(
            "the JPEG's scans code its coefficients more than {MAX_PROGRESSIVE_PASSES} times over"
        )));
    }
    Ok(blocks)
}

/// What the header says, after every check that needs no pixel decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub media_type: MediaType,
    pub width: u32,
    pub height: u32,
    pub coding: Coding,
}

/// The PNG decoder as every PNG is read here: ancillary chunks that inflate (the ICC profile,
/// compressed text) are skipped, not inflated, since no metadata is kept; what it allocates is
/// capped at `budget`; rows come out as 8-bit gray, gray+alpha, RGB or RGBA.
fn png_reader(bytes: &[u8], budget: u64) -> Result<png::Reader<Cursor<&[u8]>>, MediaError> {
    let mut decoder = png::Decoder::new_with_limits(
        Cursor::new(bytes),
        png::Limits {
            bytes: usize::try_from(budget).unwrap_or(usize::MAX),
        },
    );
    decoder.set_ignore_iccp_chunk(true);
    decoder.set_ignore_text_chunk(true);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    decoder.read_info().map_err(|e| match e {
        png::DecodingError::LimitsExceeded => {
            MediaError::Corrupt("the PNG's chunks ask for more memory than allowed".into())
        }
        other => corrupt(other),
    })
}

/// Type, structure and header checks: cheap, and enough to refuse bombs and polyglots. Nothing
/// the file carries is inflated here (see [`png_reader`]).
pub fn probe(bytes: &[u8], max_bytes: u64) -> Result<Probe, MediaError> {
    // Size first: an oversized file is refused whatever it is.
    if bytes.len() as u64 > max_bytes {
        return Err(MediaError::TooLarge(bytes.len() as u64, max_bytes));
    }
    let media_type = MediaType::sniff(bytes).ok_or(MediaError::UnsupportedType)?;
    check_structure(media_type, bytes)?;
    let (width, height, coding) = match media_type {
        MediaType::Jpeg => {
            let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
            decoder.read_info().map_err(corrupt)?;
            let info = decoder.info().ok_or_else(|| corrupt("no frame header"))?;
            let components = match info.pixel_format {
                jpeg_decoder::PixelFormat::L8 | jpeg_decoder::PixelFormat::L16 => 1,
                jpeg_decoder::PixelFormat::RGB24 => 3,
                jpeg_decoder::PixelFormat::CMYK32 => 4,
            };
            let progressive = match info.coding_process {
                jpeg_decoder::CodingProcess::DctSequential => false,
                jpeg_decoder::CodingProcess::DctProgressive => true,
                jpeg_decoder::CodingProcess::Lossless => {
                    return Err(MediaError::Corrupt("lossless JPEGs are not accepted".into()));
                }
            };
            let (width, height) = (u32::from(info.width), u32::from(info.height));
            (
                width,
                height,
                Coding::Jpeg {
                    components,
                    blocks: jpeg_structure(bytes, width, height)?,
                    progressive,
                },
            )
        }
        MediaType::Png => {
            // The header alone: a decoder with no memory to spare reads no further.
            let reader = png_reader(bytes, 64 * 1024)?;
            let info = reader.info();
            let (color, _) = reader.output_color_type();
            (
                info.width,
                info.height,
                Coding::Png {
                    bytes_per_pixel: color.samples() as u8,
                },
            )
        }
    };
    check_pixels(width, height)?;
    Ok(Probe {
        media_type,
        width,
        height,
        coding,
    })
}

/// The IDCT scale (1, 2, 4 or 8) a JPEG is decoded at to cover `cover` on its longest side:
/// the largest reduction whose output still covers it, as jpeg-decoder picks it.
fn jpeg_scale(width: u32, height: u32, cover: u32) -> u32 {
    let longest = width.max(height);
    if longest <= cover {
        return 1;
    }
    let want = |side: u32| (u64::from(side) * u64::from(cover)).div_ceil(u64::from(longest));
    let (rw, rh) = (want(width), want(height));
    [8u32, 4, 2]
        .into_iter()
        .find(|s| u64::from(width.div_ceil(*s)) >= rw && u64::from(height.div_ceil(*s)) >= rh)
        .unwrap_or(1)
}

impl Probe {
    /// The size the decoder produces to cover `cover` on the longest side (JPEG: DCT-scaled;
    /// PNG: as stored), and its channels once converted (3 RGB, 4 RGBA).
    fn decoded_size(&self, cover: u32) -> (u64, u64, u64) {
        match self.coding {
            Coding::Jpeg { .. } => {
                let scale = jpeg_scale(self.width, self.height, cover);
                (
                    u64::from(self.width.div_ceil(scale)),
                    u64::from(self.height.div_ceil(scale)),
                    3,
                )
            }
            Coding::Png { bytes_per_pixel } => (
                u64::from(self.width),
                u64::from(self.height),
                if bytes_per_pixel == 2 || bytes_per_pixel == 4 {
                    4
                } else {
                    3
                },
            ),
        }
    }

    /// The bytes decoding this image to cover `cover` allocates, at most: what [`decode`]
    /// holds at once. JPEG: the whole image's coefficients (see [`Coding::Jpeg`]), each
    /// component's samples at the output scale, the interleaved output and its RGB copy. PNG:
    /// the decoded rows and their RGB(A) copy.
    pub fn decode_bytes(&self, cover: u32) -> u64 {
        let (ow, oh, channels) = self.decoded_size(cover);
        match self.coding {
            Coding::Jpeg {
                components,
                blocks,
                progressive,
            } => {
                let copies = if progressive { 2 } else { 1 };
                let coefficients = copies * blocks * 64 * 2;
                let block_side = u64::from(8 / jpeg_scale(self.width, self.height, cover));
                let planes = blocks * block_side * block_side;
                let output = ow * oh * u64::from(components);
                coefficients + planes + output + ow * oh * channels
            }
            Coding::Png { bytes_per_pixel } => {
                let native = u64::from(bytes_per_pixel);
                ow * oh * (native + if native == channels { 0 } else { channels })
            }
        }
    }

    /// The bytes [`process`] allocates at most: the decode, then the display image resized
    /// from it (the destination, the resizer's intermediate, and for transparency a
    /// premultiplied copy of the source), then the outputs made from the display image.
    pub fn processing_bytes(&self) -> u64 {
        let (sw, sh, channels) = self.decoded_size(THUMBNAIL_SIZES[0]);
        let (dw, dh) = fit(sw as u32, sh as u32, DISPLAY_MAX);
        let (dw, dh) = (u64::from(dw), u64::from(dh));
        let display = dw * dh * channels;
        let resize = if (dw, dh) == (sw, sh) {
            0
        } else {
            // fast_image_resize passes 8-bit images vertically first (its buffer: source
            // width by destination height) and keeps its buffers for the next resize.
            display + sw * dh * channels + if channels == 4 { sw * sh * 4 } else { 0 }
        };
        // Made from the display image at once: its turned copy (two buffers) and encoding on
        // one thread, the thumbnail cascade and its encodings on the other. A PNG encoding
        // holds a filtered copy and a growing output besides.
        let outputs = match self.media_type {
            MediaType::Jpeg => 6 * display,
            MediaType::Png => 8 * display,
        };
        self.decode_bytes(THUMBNAIL_SIZES[0]) + resize + outputs
    }

    /// Refuses work that would allocate `needed` bytes over `budget`, before it allocates
    /// anything.
    fn check_memory(&self, needed: u64, budget: u64) -> Result<(), MediaError> {
        if needed > budget {
            const MB: u64 = 1024 * 1024;
            let per_pixel = needed.div_ceil((u64::from(self.width) * u64::from(self.height)).max(1));
            return Err(MediaError::TooMuchMemory(
                self.width,
                self.height,
                per_pixel,
                needed.div_ceil(MB),
                budget / MB,
            ));
        }
        Ok(())
    }
}

/// A decoded image: 8-bit RGB or RGBA rows, plus the orientation its metadata asked for.
struct Decoded {
    pixels: Vec<u8>,
    width: u32,
    height: u32,
    has_alpha: bool,
    orientation: Orientation,
}

/// Decodes once; the caller has checked what that costs against its budget, which the PNG
/// decoder also enforces. JPEGs are DCT-scaled to the smallest size that still covers `cover`.
fn decode(probe: Probe, bytes: &[u8], cover: u32, budget: u64) -> Result<Decoded, MediaError> {
    match probe.media_type {
        MediaType::Jpeg => {
            let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
            decoder.read_info().map_err(corrupt)?;
            // Request a box with the longest side at `cover`: the decoder picks the smallest
            // IDCT scale (1/8..1) whose output is at least that large.
            let (w, h) = (probe.width, probe.height);
            let longest = w.max(h);
            let (rw, rh) = if longest > cover {
                (
                    ((u64::from(w) * u64::from(cover)).div_ceil(u64::from(longest))) as u16,
                    ((u64::from(h) * u64::from(cover)).div_ceil(u64::from(longest))) as u16,
                )
            } else {
                (w as u16, h as u16)
            };
            let (sw, sh) = decoder.scale(rw.max(1), rh.max(1)).map_err(corrupt)?;
            let raw = decoder.decode().map_err(corrupt)?;
            let info = decoder.info().ok_or_else(|| corrupt("no frame header"))?;
            let orientation = decoder
                .exif_data()
                .and_then(Orientation::from_exif_chunk)
                .unwrap_or(Orientation::NoTransforms);
            let pixels = match info.pixel_format {
                jpeg_decoder::PixelFormat::RGB24 => raw,
                jpeg_decoder::PixelFormat::L8 => raw.iter().flat_map(|&l| [l, l, l]).collect(),
                jpeg_decoder::PixelFormat::L16 => raw.chunks_exact(2).flat_map(|l| [l[0], l[0], l[0]]).collect(),
                // Adobe CMYK JPEGs store inverted values.
                jpeg_decoder::PixelFormat::CMYK32 => raw
                    .chunks_exact(4)
                    .flat_map(|p| {
                        let k = u16::from(p[3]);
                        [p[0], p[1], p[2]].map(|c| ((u16::from(c) * k) / 255) as u8)
                    })
                    .collect(),
            };
            let expected = usize::from(sw) * usize::from(sh) * 3;
            if pixels.len() != expected {
                return Err(corrupt("decoded size does not match the header"));
            }
            Ok(Decoded {
                pixels,
                width: u32::from(sw),
                height: u32::from(sh),
                has_alpha: false,
                orientation,
            })
        }
        MediaType::Png => {
            let mut reader = png_reader(bytes, budget)?;
            let orientation = reader
                .info()
                .exif_metadata
                .as_deref()
                .and_then(Orientation::from_exif_chunk)
                .unwrap_or(Orientation::NoTransforms);
            let size = reader
                .output_buffer_size()
                .ok_or_else(|| corrupt("the image is too large to address"))?;
            let mut buffer = vec![0u8; size];
            let frame = reader.next_frame(&mut buffer).map_err(corrupt)?;
            buffer.truncate(frame.buffer_size());
            let (width, height) = (frame.width, frame.height);
            let (pixels, has_alpha) = match frame.color_type {
                png::ColorType::Rgb => (buffer, false),
                png::ColorType::Rgba => (buffer, true),
                png::ColorType::Grayscale => (buffer.iter().flat_map(|&l| [l, l, l]).collect(), false),
                png::ColorType::GrayscaleAlpha => (
                    buffer.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0], p[1]]).collect(),
                    true,
                ),
                png::ColorType::Indexed => return Err(corrupt("a palette was not expanded")),
            };
            let channels = if has_alpha { 4 } else { 3 };
            if pixels.len() != width as usize * height as usize * channels {
                return Err(corrupt("decoded size does not match the header"));
            }
            Ok(Decoded {
                pixels,
                width,
                height,
                has_alpha,
                orientation,
            })
        }
    }
}

/// Checks an upload fully (probe plus a decode of the whole stream) without producing output,
/// within `budget` bytes: what `POST /upload/` runs before it stores anything. JPEGs decode at
/// 1/8 scale, which still reads every entropy-coded byte; PNGs are read row by row into one
/// row's buffer, so their size costs no memory.
pub fn verify(bytes: &[u8], max_bytes: u64, budget: u64) -> Result<Probe, MediaError> {
    let probe = probe(bytes, max_bytes)?;
    match probe.media_type {
        MediaType::Jpeg => {
            probe.check_memory(probe.decode_bytes(1), budget)?;
            decode(probe, bytes, 1, budget)?;
        }
        MediaType::Png => {
            let mut reader = png_reader(bytes, budget)?;
            let mut rows = 0u32;
            while reader.next_row().map_err(corrupt)?.is_some() {
                rows += 1;
            }
            if rows == 0 {
                return Err(corrupt("the PNG has no rows"));
            }
        }
    }
    Ok(probe)
}

/// One output file.
#[derive(Clone, Debug)]
pub struct Variant {
    /// `display`, `1280`, `640` or `320`.
    pub name: &'static str,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

/// The result of processing one upload.
#[derive(Clone, Debug)]
pub struct Processed {
    pub media_type: MediaType,
    /// Size of the display image, upright.
    pub width: u32,
    pub height: u32,
    pub variants: Vec<Variant>,
}

/// Output names, largest first; each bounded by its size.
pub const VARIANTS: [(&str, u32); 4] = [
    ("display", DISPLAY_MAX),
    ("1280", THUMBNAIL_SIZES[0]),
    ("640", THUMBNAIL_SIZES[1]),
    ("320", THUMBNAIL_SIZES[2]),
];

/// The size that fits `(w, h)` within `bound` on its longest side, never upscaled.
fn fit(w: u32, h: u32, bound: u32) -> (u32, u32) {
    let longest = w.max(h);
    if longest <= bound {
        return (w, h);
    }
    let scale = f64::from(bound) / f64::from(longest);
    (
        ((f64::from(w) * scale).round() as u32).max(1),
        ((f64::from(h) * scale).round() as u32).max(1),
    )
}

fn encode(kind: MediaType, pixels: &[u8], width: u32, height: u32, has_alpha: bool) -> Result<Vec<u8>, MediaError> {
    let mut out = Vec::new();
    match kind {
        MediaType::Jpeg => {
            let encoder = jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY);
            encoder
                .encode(pixels, width as u16, height as u16, jpeg_encoder::ColorType::Rgb)
                .map_err(|e| MediaError::Corrupt(format!("encoding: {e}")))?;
        }
        MediaType::Png => {
            use image::ImageEncoder;
            let encoder = image::codecs::png::PngEncoder::new_with_quality(
                &mut out,
                image::codecs::png::CompressionType::Fast,
                image::codecs::png::FilterType::Adaptive,
            );
            let color = if has_alpha {
                image::ExtendedColorType::Rgba8
            } else {
                image::ExtendedColorType::Rgb8
            };
            encoder
                .write_image(pixels, width, height, color)
                .map_err(|e| MediaError::Corrupt(format!("encoding: {e}")))?;
        }
    }
    Ok(out)
}

/// Applies an EXIF orientation to raw pixels.
fn orient(pixels: Vec<u8>, width: u32, height: u32, has_alpha: bool, orientation: Orientation) -> (Vec<u8>, u32, u32) {
    if orientation == Orientation::NoTransforms {
        return (pixels, width, height);
    }
    let mut image = if has_alpha {
        image::RgbaImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgba8)
    } else {
        image::RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8)
    }
    .unwrap_or_default();
    image.apply_orientation(orientation);
    let (w, h) = (image.width(), image.height());
    let raw = if has_alpha {
        image.into_rgba8().into_raw()
    } else {
        image.into_rgb8().into_raw()
    };
    (raw, w, h)
}

/// One output: oriented upright, then encoded from pixels (so no metadata survives).
fn output(
    name: &'static str,
    kind: MediaType,
    image: &ResizeImage<'_>,
    has_alpha: bool,
    orientation: Orientation,
) -> Result<Variant, MediaError> {
    let (w, h) = (image.width(), image.height());
    // Encode straight from the buffer unless the image must be turned first.
    let (bytes, width, height) = if orientation == Orientation::NoTransforms {
        (encode(kind, image.buffer(), w, h, has_alpha)?, w, h)
    } else {
        let (pixels, ow, oh) = orient(image.buffer().to_vec(), w, h, has_alpha, orientation);
        (encode(kind, &pixels, ow, oh, has_alpha)?, ow, oh)
    };
    Ok(Variant {
        name,
        width,
        height,
        bytes,
    })
}

/// `source` resized to `(w, h)`: Catmull-Rom in general; near-exact halvings use a bilinear
/// kernel, which looks the same there and costs less.
fn resized(
    resizer: &mut Resizer,
    source: &ResizeImage<'_>,
    w: u32,
    h: u32,
) -> Result<ResizeImage<'static>, MediaError> {
    let ratio = source.width() as f32 / w as f32;
    let filter = if (ratio - 2.0).abs() < 0.05 {
        FilterType::Bilinear
    } else {
        FilterType::CatmullRom
    };
    let mut dst = ResizeImage::new(w, h, source.pixel_type());
    resizer
        .resize(
            source,
            &mut dst,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter)),
        )
        .map_err(|e| corrupt(format!("resizing: {e}")))?;
    Ok(dst)
}

/// The whole pipeline: probe, decode once (within `budget` bytes), resize each variant from
/// the previous one (largest first), orient, encode. Refuses anything [`probe`] refuses.
///
/// With more than one CPU (process-media is sized for two vCPUs), the display image is
/// encoded on a second thread while this one makes and encodes the thumbnails: the two
/// halves cost about the same, so the work after decoding takes about half as long.
pub fn process(bytes: &[u8], max_bytes: u64, budget: u64) -> Result<Processed, MediaError> {
    let parallel = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    process_with(bytes, max_bytes, budget, parallel)
}

/// [`process`], choosing whether the display image may be encoded on a second thread (the
/// benchmark measures both ways).
pub fn process_with(bytes: &[u8], max_bytes: u64, budget: u64, parallel: bool) -> Result<Processed, MediaError> {
    let probe = probe(bytes, max_bytes)?;
    let kind = probe.media_type;
    // Decode at the smallest DCT scale that still covers the largest thumbnail; the display
    // image is that, bounded by DISPLAY_MAX. A 4032x3024 photo decodes at 2016x1512.
    probe.check_memory(probe.processing_bytes(), budget)?;
    let decoded = decode(probe, bytes, THUMBNAIL_SIZES[0], budget)?;
    let (has_alpha, orientation) = (decoded.has_alpha, decoded.orientation);
    let pixel_type = if has_alpha { PixelType::U8x4 } else { PixelType::U8x3 };
    let (decoded_width, decoded_height) = (decoded.width, decoded.height);
    let mut resizer = Resizer::new();
    let mut display = ResizeImage::from_vec_u8(decoded_width, decoded_height, decoded.pixels, pixel_type)
        .map_err(|e| corrupt(format!("pixel buffer: {e}")))?;
    let (w, h) = fit(decoded_width, decoded_height, DISPLAY_MAX);
    if (w, h) != (decoded_width, decoded_height) {
        display = resized(&mut resizer, &display, w, h)?;
    }
    let display = &display;

    let thumbnails = |resizer: &mut Resizer| -> Result<Vec<Variant>, MediaError> {
        let mut variants = Vec::with_capacity(THUMBNAIL_SIZES.len());
        let mut previous: Option<ResizeImage<'static>> = None;
        for (name, bound) in &VARIANTS[1..] {
            let source = previous.as_ref().unwrap_or(display);
            // Bounds come from the decoded size, so rounding never compounds down the cascade.
            let (w, h) = fit(decoded_width, decoded_height, *bound);
            // Same size: the source itself is this variant (no copy).
            let next = if (w, h) != (source.width(), source.height()) {
                Some(resized(resizer, source, w, h)?)
            } else {
                None
            };
            variants.push(output(
                name,
                kind,
                next.as_ref().unwrap_or(source),
                has_alpha,
                orientation,
            )?);
            if next.is_some() {
                previous = next;
            }
        }
        Ok(variants)
    };

    let (display_variant, thumbnail_variants) = std::thread::scope(|scope| {
        let encoder = parallel
            .then(|| {
                std::thread::Builder::new()
                    .name("encode-display".into())
                    .spawn_scoped(scope, || output("display", kind, display, has_alpha, orientation))
                    .ok()
            })
            .flatten();
        let thumbnails = thumbnails(&mut resizer);
        let display = match encoder {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(corrupt("the display encoder stopped"))),
            // One CPU (or no thread to be had): the same work, in turn.
            None => output("display", kind, display, has_alpha, orientation),
        };
        (display, thumbnails)
    });
    let display_variant = display_variant?;
    let (width, height) = (display_variant.width, display_variant.height);
    let mut variants = Vec::with_capacity(VARIANTS.len());
    variants.push(display_variant);
    variants.extend(thumbnail_variants?);
    Ok(Processed {
        media_type: kind,
        width,
        height,
        variants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use forum_testkit::images::*;

    /// The decode budget of a 256 MB function.
    const TEST_BUDGET: u64 = 128 * 1024 * 1024;

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn types_are_judged_by_content() {
        assert_eq!(MediaType::sniff(&jpeg_with_exif(8, 8, 1)), Some(MediaType::Jpeg));
        assert_eq!(MediaType::sniff(&png(4, 4, false)), Some(MediaType::Png));
        for other in [
            &b"<svg xmlns='http://www.w3.org/2000/svg'/>"[..],
            b"GIF89a....",
            b"PK\x03\x04",
            b"",
        ] {
            assert_eq!(probe(other, MAX_UPLOAD_BYTES), Err(MediaError::UnsupportedType));
        }
    }

    #[test]
    fn orientation_is_applied_and_all_metadata_stripped() {
        // Orientation 6: the stored image is rotated 90 degrees clockwise for display.
        let source = jpeg_with_exif(400, 200, 6);
        assert!(contains(&source, b"Exif\0\0"));
        let out = process(&source, MAX_UPLOAD_BYTES, TEST_BUDGET).unwrap();
        assert_eq!((out.width, out.height), (200, 400), "upright");
        for v in &out.variants {
            assert!(!contains(&v.bytes, b"Exif"), "{} kept EXIF", v.name);
            assert!(v.bytes.starts_with(&[0xFF, 0xD8, 0xFF]));
            let decoded = image::load_from_memory(&v.bytes).unwrap().into_rgb8();
            assert_eq!((decoded.width(), decoded.height()), (v.width, v.height));
            // The left (red) half of the stored image is the top half once upright.
            let top = decoded.get_pixel(v.width / 2, v.height / 8);
            let bottom = decoded.get_pixel(v.width / 2, v.height * 7 / 8);
            assert!(top[0] > 150 && top[2] < 100, "{}: top {top:?}", v.name);
            assert!(bottom[2] > 150 && bottom[0] < 100, "{}: bottom {bottom:?}", v.name);
        }
    }

    #[test]
    fn variants_are_bounded_and_never_upscaled() {
        let out = process(&jpeg_with_exif(2600, 1950, 1), MAX_UPLOAD_BYTES, TEST_BUDGET).unwrap();
        let sizes: Vec<_> = out.variants.iter().map(|v| (v.name, v.width, v.height)).collect();
        // 2600 decodes at 1/2 scale (1300 >= 1280).
        assert_eq!(
            sizes,
            [
                ("display", 1300, 975),
                ("1280", 1280, 960),
                ("640", 640, 480),
                ("320", 320, 240)
            ]
        );
        let small = process(&png(100, 50, true), MAX_UPLOAD_BYTES, TEST_BUDGET).unwrap();
        assert!(small.variants.iter().all(|v| (v.width, v.height) == (100, 50)));
        let decoded = image::load_from_memory(&small.variants[3].bytes).unwrap();
        assert!(decoded.color().has_alpha(), "PNG transparency kept");
    }

    /// What a decoder would be asked to do beyond the image's own work is refused from the
    /// headers, before any decoding: each of these costs seconds of CPU to decode.
    #[test]
    fn hollow_repeated_and_over_refined_jpegs_are_refused_from_their_headers() {
        let refused = |bytes: &[u8]| match probe(bytes, MAX_UPLOAD_BYTES) {
            Err(MediaError::Corrupt(why)) => why,
            other => panic!("not refused as corrupt: {other:?}"),
        };
        // 50 MP with no data, once and a hundred times: a few hundred bytes.
        for scans in [1, 100] {
            let hollow = hollow_jpeg(7071, 7071, scans);
            assert!(hollow.len() < 4_000, "{}", hollow.len());
            assert!(refused(&hollow).contains("fewer bits"));
        }
        // A photo cut short 100 bytes into its scan (its end-of-image marker put back): fewer
        // than 2 bits for each of its blocks.
        let photo = photo_jpeg(256, 256);
        let (mut cut, scans) = jpeg_parts(&photo);
        let header = 2 + usize::from(u16::from_be_bytes([scans[0][2], scans[0][3]]));
        cut.extend_from_slice(&scans[0][..header + 100]);
        cut.extend_from_slice(&[0xFF, 0xD9]);
        assert!(refused(&cut).contains("fewer bits"));
        // A sequential frame codes each component once.
        assert!(probe(&jpeg_scans_repeated(&photo, 1), MAX_UPLOAD_BYTES).is_ok());
        assert!(refused(&jpeg_scans_repeated(&photo, 2)).contains("more than one scan"));
        // A progressive frame's scans may refine its coefficients, up to four times over.
        let progressive = progressive_jpeg(256, 256, 3);
        let (_, scans) = jpeg_parts(&progressive);
        assert!(probe(&progressive, MAX_UPLOAD_BYTES).is_ok());
        assert!(probe(&jpeg_scans_repeated(&progressive, 4), MAX_UPLOAD_BYTES).is_ok());
        assert!(refused(&jpeg_scans_repeated(&progressive, 5)).contains("4 times over"));
        // ... in at most 64 scans: its DC scan (one coefficient a block) 70 times.
        let (head, _) = jpeg_parts(&progressive);
        let mut many = head;
        for _ in 0..70 {
            many.extend_from_slice(&scans[0]);
        }
        for scan in &scans[1..] {
            many.extend_from_slice(scan);
        }
        many.extend_from_slice(&[0xFF, 0xD9]);
        assert!(refused(&many).contains("more than 64 scans"));
    }

    #[test]
    fn malicious_and_broken_files_are_refused_before_any_output() {
        let jpeg = jpeg_with_exif(64, 64, 1);
        let truncated = &jpeg[..jpeg.len() - 40];
        assert!(matches!(
            process(truncated, MAX_UPLOAD_BYTES, TEST_BUDGET),
            Err(MediaError::Corrupt(_))
        ));
        let mut polyglot = jpeg.clone();
        polyglot.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00evil.js PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        assert!(matches!(
            process(&polyglot, MAX_UPLOAD_BYTES, TEST_BUDGET),
            Err(MediaError::Corrupt(_))
        ));
        let mut fake_png = b"\x89PNG\r\n\x1a\n".to_vec();
        fake_png.extend_from_slice(&[7u8; 200]);
        fake_png.extend_from_slice(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]);
        assert!(matches!(
            process(&fake_png, MAX_UPLOAD_BYTES, TEST_BUDGET),
            Err(MediaError::Corrupt(_))
        ));
        // A JPEG whose entropy-coded data is garbage (header intact).
        let mut garbled = jpeg.clone();
        let len = garbled.len();
        for b in &mut garbled[len / 2..len - 2] {
            *b = 0xFF;
        }
        assert!(verify(&garbled, MAX_UPLOAD_BYTES, TEST_BUDGET).is_err());
        let bomb = png_bomb(50_000, 50_000);
        assert!(bomb.len() < 100);
        assert_eq!(
            process(&bomb, MAX_UPLOAD_BYTES, TEST_BUDGET).unwrap_err(),
            MediaError::TooManyPixels(50_000, 50_000)
        );
        assert!(matches!(
            verify(&jpeg, 100, TEST_BUDGET),
            Err(MediaError::TooLarge(_, 100))
        ));
        assert!(verify(&jpeg, MAX_UPLOAD_BYTES, TEST_BUDGET).is_ok());
    }
}

#[cfg(test)]
mod stage_timing {
    use super::*;
    use forum_testkit::images as fixtures;

    #[test]
    #[ignore = "prints stage timings; run with --ignored --nocapture"]
    fn stage_timings() {
        let bytes = fixtures::photo_jpeg(4032, 3024);
        let probe = probe(&bytes, u64::MAX).unwrap();
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let decoded = decode(probe, &bytes, THUMBNAIL_SIZES[0], u64::MAX).unwrap();
            let t_decode = t.elapsed();
            let t = std::time::Instant::now();
            let enc = encode(MediaType::Jpeg, &decoded.pixels, decoded.width, decoded.height, false).unwrap();
            let t_encode = t.elapsed();
            let t = std::time::Instant::now();
            let all = process(&bytes, u64::MAX, u64::MAX).unwrap();
            println!(
                "decode {t_decode:?} encode-display {t_encode:?} ({} KB) total {:?} ({})",
                enc.len() / 1024,
                t.elapsed(),
                all.variants.len()
            );
        }
    }
}
