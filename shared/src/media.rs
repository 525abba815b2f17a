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

use std::io::Cursor;

use fast_image_resize::images::Image as ResizeImage;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::error::ApiError;
pub use crate::model::MediaType;

/// Largest upload through a presigned URL.
pub const MAX_UPLOAD_BYTES: u64 = 15 * 1024 * 1024;
/// Largest upload through `POST /upload/`: Lambda's 6 MB request limit, after base64, bounds it.
pub const MAX_DIRECT_UPLOAD_BYTES: u64 = 4 * 1024 * 1024;
/// Largest image, in pixels, accepted: checked from the header, before any decoding.
pub const MAX_PIXELS: u64 = 50_000_000;
/// Largest side, in pixels.
pub const MAX_SIDE: u32 = 20_000;
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

/// How many bytes of pixel buffers a decode may allocate: half the function's memory
/// (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, set by Lambda; 256 MB, the API functions' size, where it
/// is not set, as in forum-local). The other half is the runtime, the upload itself and the
/// outputs. A pixel count alone does not bound this: a 16-bit RGBA PNG needs 8 bytes a pixel.
pub fn decode_budget() -> u64 {
    static BUDGET: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| {
        let megabytes = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(256);
        megabytes * 1024 * 1024 / 2
    })
}

impl From<MediaError> for ApiError {
    fn from(err: MediaError) -> Self {
        match &err {
            MediaError::UnsupportedType => ApiError::UnsupportedMediaType(err.to_string()),
            MediaError::TooLarge(..) => ApiError::PayloadTooLarge(err.to_string()),
            MediaError::TooManyPixels(..) | MediaError::TooMuchMemory(..) => {
                ApiError::bad_request("image_too_large", err.to_string())
            }
            MediaError::Corrupt(_) => ApiError::bad_request("invalid_image", err.to_string()),
        }
    }
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

/// What the header says, after every check that needs no pixel decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub media_type: MediaType,
    pub width: u32,
    pub height: u32,
}

/// Type, structure and header checks: cheap, and enough to refuse bombs and polyglots.
pub fn probe(bytes: &[u8], max_bytes: u64) -> Result<Probe, MediaError> {
    // Size first: an oversized file is refused whatever it is.
    if bytes.len() as u64 > max_bytes {
        return Err(MediaError::TooLarge(bytes.len() as u64, max_bytes));
    }
    let media_type = MediaType::sniff(bytes).ok_or(MediaError::UnsupportedType)?;
    check_structure(media_type, bytes)?;
    let (width, height) = match media_type {
        MediaType::Jpeg => {
            let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
            decoder.read_info().map_err(corrupt)?;
            let info = decoder.info().ok_or_else(|| corrupt("no frame header"))?;
            (u32::from(info.width), u32::from(info.height))
        }
        MediaType::Png => {
            let decoder = image::codecs::png::PngDecoder::new(Cursor::new(bytes)).map_err(corrupt)?;
            let (width, height) = decoder.dimensions();
            check_pixels(width, height)?;
            // The decode holds the image in its own pixel format, then in 8-bit RGB(A).
            let native = decoder.color_type().bytes_per_pixel() as u64;
            let converted = if decoder.color_type().has_alpha() { 4 } else { 3 };
            let per_pixel = if native == converted {
                native
            } else {
                native + converted
            };
            let needed = u64::from(width) * u64::from(height) * per_pixel;
            if needed > decode_budget() {
                const MB: u64 = 1024 * 1024;
                return Err(MediaError::TooMuchMemory(
                    width,
                    height,
                    native,
                    needed.div_ceil(MB),
                    decode_budget() / MB,
                ));
            }
            (width, height)
        }
    };
    check_pixels(width, height)?;
    Ok(Probe {
        media_type,
        width,
        height,
    })
}

/// A decoded image: 8-bit RGB or RGBA rows, plus the orientation its metadata asked for.
struct Decoded {
    pixels: Vec<u8>,
    width: u32,
    height: u32,
    has_alpha: bool,
    orientation: Orientation,
}

/// Decodes once. JPEGs are DCT-scaled to the smallest size that still covers `cover`.
fn decode(probe: Probe, bytes: &[u8], cover: u32) -> Result<Decoded, MediaError> {
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
            let mut decoder = ImageReader::with_format(Cursor::new(bytes), image::ImageFormat::Png)
                .into_decoder()
                .map_err(corrupt)?;
            let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
            let mut limits = image::Limits::default();
            limits.max_image_width = Some(MAX_SIDE);
            limits.max_image_height = Some(MAX_SIDE);
            limits.max_alloc = Some(decode_budget());
            decoder.set_limits(limits).map_err(corrupt)?;
            let image = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
            let (width, height) = (image.width(), image.height());
            let has_alpha = image.color().has_alpha();
            let pixels = if has_alpha {
                image.into_rgba8().into_raw()
            } else {
                image.into_rgb8().into_raw()
            };
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

/// Checks an upload fully (probe plus a decode of the whole stream) without producing output:
/// what `POST /upload/` runs before it stores anything. JPEGs decode at 1/8 scale, which
/// still reads every entropy-coded byte.
pub fn verify(bytes: &[u8], max_bytes: u64) -> Result<Probe, MediaError> {
    let probe = probe(bytes, max_bytes)?;
    decode(probe, bytes, 1)?;
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

/// The whole pipeline: probe, decode once, resize each variant from the previous one
/// (largest first), orient, encode. Refuses anything [`probe`] refuses.
///
/// With more than one CPU (process-media is sized for two vCPUs), the display image is
/// encoded on a second thread while this one makes and encodes the thumbnails: the two
/// halves cost about the same, so the work after decoding takes about half as long.
pub fn process(bytes: &[u8], max_bytes: u64) -> Result<Processed, MediaError> {
    let parallel = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    process_with(bytes, max_bytes, parallel)
}

/// [`process`], choosing whether the display image may be encoded on a second thread (the
/// benchmark measures both ways).
pub fn process_with(bytes: &[u8], max_bytes: u64, parallel: bool) -> Result<Processed, MediaError> {
    let probe = probe(bytes, max_bytes)?;
    let kind = probe.media_type;
    // Decode at the smallest DCT scale that still covers the largest thumbnail; the display
    // image is that, bounded by DISPLAY_MAX. A 4032x3024 photo decodes at 2016x1512.
    let decoded = decode(probe, bytes, THUMBNAIL_SIZES[0])?;
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

/// Deterministic test images (also used by the end-to-end tests and the benchmark).
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures {
    /// A JPEG whose left half is red and right half blue, with an EXIF block carrying an
    /// orientation and a GPS position.
    pub fn jpeg_with_exif(width: u16, height: u16, orientation: u16) -> Vec<u8> {
        let mut pixels = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
        for _y in 0..height {
            for x in 0..width {
                pixels.extend_from_slice(if x < width / 2 { &[220, 20, 20] } else { &[20, 20, 220] });
            }
        }
        let mut out = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
        encoder.add_app_segment(1, &exif(orientation)).unwrap();
        encoder
            .encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        out
    }

    /// A little-endian TIFF EXIF block: IFD0 with Orientation and a GPS IFD pointer; the GPS
    /// IFD holds a latitude reference so "GPS" data is present to be stripped.
    pub fn exif(orientation: u16) -> Vec<u8> {
        let mut e = b"Exif\0\0".to_vec();
        e.extend_from_slice(b"II*\0");
        e.extend_from_slice(&8u32.to_le_bytes()); // IFD0 at 8
        e.extend_from_slice(&2u16.to_le_bytes()); // 2 entries
        e.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation, SHORT, 1
        e.extend_from_slice(&3u16.to_le_bytes());
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&u32::from(orientation).to_le_bytes());
        e.extend_from_slice(&0x8825u16.to_le_bytes()); // GPS IFD pointer, LONG, 1
        e.extend_from_slice(&4u16.to_le_bytes());
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&38u32.to_le_bytes()); // GPS IFD at 38
        e.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
        e.extend_from_slice(&1u16.to_le_bytes()); // GPS IFD: 1 entry
        e.extend_from_slice(&0x0001u16.to_le_bytes()); // GPSLatitudeRef, ASCII, 2: "N"
        e.extend_from_slice(&2u16.to_le_bytes());
        e.extend_from_slice(&2u32.to_le_bytes());
        e.extend_from_slice(b"N\0\0\0");
        e.extend_from_slice(&0u32.to_le_bytes());
        e
    }

    /// Deterministic photo-like RGB pixels: smooth gradients and shapes under fine noise, so
    /// codecs see roughly a real photo's entropy (a 12 MP JPEG at quality 90 is a few MB).
    pub fn photo_pixels(width: u32, height: u32) -> Vec<u8> {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut out = Vec::with_capacity(width as usize * height as usize * 3);
        for y in 0..height {
            for x in 0..width {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let noise = (state & 0x1F) as i32 - 16;
                let fx = x as f32 / width as f32;
                let fy = y as f32 / height as f32;
                let wave = ((fx * 23.0).sin() * (fy * 17.0).cos() * 60.0) as i32;
                let r = (fx * 200.0) as i32 + wave + noise;
                let g = (fy * 180.0) as i32 - wave / 2 + noise;
                let b = ((fx + fy) * 90.0) as i32 + wave / 3 + noise;
                out.extend([r, g, b].map(|c| c.clamp(0, 255) as u8));
            }
        }
        out
    }

    pub fn photo_jpeg(width: u16, height: u16) -> Vec<u8> {
        let pixels = photo_pixels(u32::from(width), u32::from(height));
        let mut out = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
        encoder.add_app_segment(1, &exif(1)).unwrap_or_default();
        encoder
            .encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb)
            .unwrap_or_default();
        out
    }

    pub fn photo_png(width: u32, height: u32) -> Vec<u8> {
        use image::ImageEncoder;
        let pixels = photo_pixels(width, height);
        let mut out = Vec::new();
        let _ = image::codecs::png::PngEncoder::new(&mut out).write_image(
            &pixels,
            width,
            height,
            image::ExtendedColorType::Rgb8,
        );
        out
    }

    /// A PNG with a deterministic pattern.
    pub fn png(width: u32, height: u32, alpha: bool) -> Vec<u8> {
        use image::ImageEncoder;
        let channels = if alpha { 4 } else { 3 };
        let pixels: Vec<u8> = (0..width * height * channels).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        let color = if alpha {
            image::ExtendedColorType::Rgba8
        } else {
            image::ExtendedColorType::Rgb8
        };
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(&pixels, width, height, color)
            .unwrap();
        out
    }

    /// A PNG whose header claims `width` x `height` with almost no data: a decompression bomb's
    /// calling card.
    pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
        png_header_only(width, height, 1, 0) // 1-bit grayscale
    }

    /// A PNG with this header (bit depth, color type) and almost no data.
    pub fn png_header_only(width: u32, height: u32, bit_depth: u8, color_type: u8) -> Vec<u8> {
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut crc_input = kind.to_vec();
            crc_input.extend_from_slice(data);
            out.extend_from_slice(&crc_input);
            out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
        }
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[bit_depth, color_type, 0, 0, 0]);
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        chunk(&mut out, b"IEND", &[]);
        out
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
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

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
        let out = process(&source, MAX_UPLOAD_BYTES).unwrap();
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
        let out = process(&jpeg_with_exif(2600, 1950, 1), MAX_UPLOAD_BYTES).unwrap();
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
        let small = process(&png(100, 50, true), MAX_UPLOAD_BYTES).unwrap();
        assert!(small.variants.iter().all(|v| (v.width, v.height) == (100, 50)));
        let decoded = image::load_from_memory(&small.variants[3].bytes).unwrap();
        assert!(decoded.color().has_alpha(), "PNG transparency kept");
    }

    #[test]
    fn malicious_and_broken_files_are_refused_before_any_output() {
        let jpeg = jpeg_with_exif(64, 64, 1);
        let truncated = &jpeg[..jpeg.len() - 40];
        assert!(matches!(
            process(truncated, MAX_UPLOAD_BYTES),
            Err(MediaError::Corrupt(_))
        ));
        let mut polyglot = jpeg.clone();
        polyglot.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00evil.js PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        assert!(matches!(
            process(&polyglot, MAX_UPLOAD_BYTES),
            Err(MediaError::Corrupt(_))
        ));
        let mut fake_png = b"\x89PNG\r\n\x1a\n".to_vec();
        fake_png.extend_from_slice(&[7u8; 200]);
        fake_png.extend_from_slice(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]);
        assert!(matches!(
            process(&fake_png, MAX_UPLOAD_BYTES),
            Err(MediaError::Corrupt(_))
        ));
        // A JPEG whose entropy-coded data is garbage (header intact).
        let mut garbled = jpeg.clone();
        let len = garbled.len();
        for b in &mut garbled[len / 2..len - 2] {
            *b = 0xFF;
        }
        assert!(verify(&garbled, MAX_UPLOAD_BYTES).is_err());
        let bomb = png_bomb(50_000, 50_000);
        assert!(bomb.len() < 100);
        assert_eq!(
            process(&bomb, MAX_UPLOAD_BYTES).unwrap_err(),
            MediaError::TooManyPixels(50_000, 50_000)
        );
        assert!(matches!(verify(&jpeg, 100), Err(MediaError::TooLarge(_, 100))));
        assert!(verify(&jpeg, MAX_UPLOAD_BYTES).is_ok());
    }

    #[test]
    fn errors_map_to_clear_api_statuses() {
        assert_eq!(ApiError::from(MediaError::UnsupportedType).status(), 415);
        assert_eq!(ApiError::from(MediaError::TooLarge(2, 1)).status(), 413);
        assert_eq!(
            ApiError::from(MediaError::TooManyPixels(1, 1)).code(),
            "image_too_large"
        );
        assert_eq!(ApiError::from(MediaError::Corrupt("x".into())).code(), "invalid_image");
    }
}

#[cfg(test)]
mod stage_timing {
    use super::*;

    #[test]
    #[ignore = "prints stage timings; run with --ignored --nocapture"]
    fn stage_timings() {
        let bytes = fixtures::photo_jpeg(4032, 3024);
        let probe = probe(&bytes, u64::MAX).unwrap();
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let decoded = decode(probe, &bytes, THUMBNAIL_SIZES[0]).unwrap();
            let t_decode = t.elapsed();
            let t = std::time::Instant::now();
            let enc = encode(MediaType::Jpeg, &decoded.pixels, decoded.width, decoded.height, false).unwrap();
            let t_encode = t.elapsed();
            let t = std::time::Instant::now();
            let all = process(&bytes, u64::MAX).unwrap();
            println!(
                "decode {t_decode:?} encode-display {t_encode:?} ({} KB) total {:?} ({})",
                enc.len() / 1024,
                t.elapsed(),
                all.variants.len()
            );
        }
    }
}
