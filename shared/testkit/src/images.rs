//! Deterministic test images: photo-like JPEGs and PNGs of every coding, and the hostile ones
//! (decompression bombs, chunk bombs, progressive JPEGs that cost their whole coefficient set).

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
    // The waves per column and per row, computed once (this also runs unoptimized).
    let columns: Vec<(f32, f32)> = (0..width)
        .map(|x| {
            let fx = x as f32 / width as f32;
            (fx, (fx * 23.0).sin())
        })
        .collect();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        let fy = y as f32 / height as f32;
        let row_wave = (fy * 17.0).cos() * 60.0;
        for &(fx, column_wave) in &columns {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state & 0x1F) as i32 - 16;
            let wave = (column_wave * row_wave) as i32;
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

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc_input);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
}

/// A JPEG coded progressively (every coefficient of the image is held until the last
/// scan), flat grey, with 1, 3 or 4 (CMYK) components, 4:4:4: the most coefficients a
/// file of its size can carry.
pub fn progressive_jpeg(width: u16, height: u16, components: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 80);
    encoder.set_progressive(true);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_1_1);
    let color = match components {
        1 => jpeg_encoder::ColorType::Luma,
        4 => jpeg_encoder::ColorType::Cmyk,
        _ => jpeg_encoder::ColorType::Rgb,
    };
    let pixels = vec![128u8; usize::from(width) * usize::from(height) * usize::from(components.clamp(1, 4))];
    encoder.encode(&pixels, width, height, color).expect("encodes");
    out
}

/// A flat PNG of any colour type and depth, streamed row by row (a 50 MP one compresses
/// to well under the upload limit, and decodes to hundreds of MB).
pub fn flat_png(width: u32, height: u32, color: png::ColorType, depth: png::BitDepth) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(color);
    encoder.set_depth(depth);
    if color == png::ColorType::Indexed {
        encoder.set_palette(vec![90u8; 3 << (depth as usize).min(8)]);
    }
    let row_bytes = (width as usize * color.samples() * depth as usize).div_ceil(8);
    let row = vec![0x5Au8; row_bytes];
    {
        let mut writer = encoder.write_header().expect("a valid header");
        let mut stream = writer.stream_writer().expect("a stream");
        for _ in 0..height {
            std::io::Write::write_all(&mut stream, &row).expect("encodes");
        }
        stream.finish().expect("finishes");
    }
    out
}

/// How a test JPEG is coded.
#[derive(Clone, Copy, Debug)]
pub struct JpegCoding {
    /// 1 (grey), 3 (YCbCr) or 4 (CMYK).
    pub components: u8,
    pub progressive: bool,
    /// 4:2:0 chroma (the camera default) rather than 4:4:4.
    pub subsampled: bool,
    /// MCUs between restart markers (0: none).
    pub restart_interval: u16,
}

/// A photo-like JPEG coded as asked.
pub fn jpeg_coded(width: u16, height: u16, coding: JpegCoding) -> Vec<u8> {
    let rgb = photo_pixels(u32::from(width), u32::from(height));
    let (pixels, color) = match coding.components {
        1 => (
            rgb.chunks_exact(3).map(|p| p[1]).collect(),
            jpeg_encoder::ColorType::Luma,
        ),
        4 => (
            rgb.chunks_exact(3)
                .flat_map(|p| [p[0], p[1], p[2], 255 - p[1] / 2])
                .collect(),
            jpeg_encoder::ColorType::Cmyk,
        ),
        _ => (rgb, jpeg_encoder::ColorType::Rgb),
    };
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 85);
    encoder.set_progressive(coding.progressive);
    encoder.set_sampling_factor(if coding.subsampled {
        jpeg_encoder::SamplingFactor::F_2_2
    } else {
        jpeg_encoder::SamplingFactor::F_1_1
    });
    if coding.restart_interval > 0 {
        encoder.set_restart_interval(coding.restart_interval);
    }
    encoder.encode(&pixels, width, height, color).expect("encodes");
    out
}

/// A photo-like PNG of any colour type and bit depth the format has (palette images use
/// 16 grey-blue entries, with a transparency table when `palette_alpha`).
pub fn png_coded(width: u32, height: u32, color: png::ColorType, depth: png::BitDepth, palette_alpha: bool) -> Vec<u8> {
    let rgb = photo_pixels(width, height);
    let bits = depth as usize;
    let samples = color.samples();
    let mut data = Vec::with_capacity(rgb.len() * samples * bits / 24 + height as usize);
    for row in rgb.chunks_exact(width as usize * 3) {
        let (mut acc, mut filled) = (0u32, 0usize);
        for p in row.chunks_exact(3) {
            let grey = u16::from(p[0] / 3 + p[1] / 3 + p[2] / 3);
            let [r, g, b] = [p[0], p[1], p[2]].map(u16::from);
            let values: &[u16] = match color {
                png::ColorType::Grayscale | png::ColorType::Indexed => &[grey],
                png::ColorType::GrayscaleAlpha => &[grey, b],
                png::ColorType::Rgb => &[r, g, b],
                png::ColorType::Rgba => &[r, g, b, 255 - r],
            };
            debug_assert_eq!(values.len(), samples);
            for &v in values {
                // The 8-bit value at the depth.
                let v = match bits {
                    16 => u32::from(v) * 257,
                    8 => u32::from(v),
                    b => u32::from(v) >> (8 - b),
                };
                if bits >= 8 {
                    data.extend_from_slice(&v.to_be_bytes()[4 - bits / 8..]);
                } else {
                    acc = (acc << bits) | v;
                    filled += bits;
                    if filled == 8 {
                        data.push(acc as u8);
                        (acc, filled) = (0, 0);
                    }
                }
            }
        }
        if filled > 0 {
            data.push((acc << (8 - filled)) as u8);
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(color);
    encoder.set_depth(depth);
    if color == png::ColorType::Indexed {
        let entries = 1usize << bits;
        let palette: Vec<u8> = (0..entries)
            .flat_map(|i| {
                let v = (i * 255 / (entries - 1).max(1)) as u8;
                [v / 2, v, 255 - v / 3]
            })
            .collect();
        encoder.set_palette(palette);
        if palette_alpha {
            encoder.set_trns(
                (0..entries)
                    .map(|i| (i * 255 / (entries - 1).max(1)) as u8)
                    .collect::<Vec<_>>(),
            );
        }
    }
    let mut writer = encoder.write_header().expect("a valid header");
    writer.write_image_data(&data).expect("encodes");
    writer.finish().expect("finishes");
    out
}

/// A small valid PNG carrying an ancillary chunk (`iCCP`, `zTXt` or `iTXt`) whose zlib stream
/// inflates to `inflated` bytes: a decompression bomb in metadata a decoder may read with the
/// header.
pub fn png_with_chunk_bomb(kind: &[u8; 4], inflated: usize) -> Vec<u8> {
    let image = png(16, 16, false);
    let bomb = miniz_oxide::deflate::compress_to_vec_zlib(&vec![0u8; inflated], 10);
    let data = match kind {
        b"iCCP" | b"zTXt" => [b"bomb\0\0".as_slice(), &bomb].concat(),
        _ => [b"bomb\0\x01\0\0\0".as_slice(), &bomb].concat(),
    };
    // After IHDR (8-byte signature, 25-byte chunk).
    let mut out = image[..33].to_vec();
    chunk(&mut out, kind, &data);
    out.extend_from_slice(&image[33..]);
    out
}

/// A valid PNG whose image data is followed, in the same zlib stream, by `trailing` more
/// bytes of zeros: inflating past the image would cost CPU for nothing.
pub fn png_with_trailing_data(width: u32, height: u32, trailing: usize) -> Vec<u8> {
    let row = 1 + width as usize * 3;
    let mut raw = vec![0u8; row * height as usize + trailing];
    for y in 0..height as usize {
        raw[y * row] = 0; // filter: none
    }
    let idat = miniz_oxide::deflate::compress_to_vec_zlib(&raw, 10);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
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

/// A JPEG's parts: everything before its first scan, then each scan (the tables written
/// before it, its header and its entropy-coded data), up to the end-of-image marker.
pub fn jpeg_parts(jpeg: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut head = jpeg[..2].to_vec();
    let mut scans = Vec::new();
    let mut tables = Vec::new();
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at + 1] != 0xD9 {
        let length = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        let mut end = at + 2 + length;
        if jpeg[at + 1] == 0xDA {
            while end + 1 < jpeg.len()
                && !(jpeg[end] == 0xFF && jpeg[end + 1] != 0 && !(0xD0..=0xD7).contains(&jpeg[end + 1]))
            {
                end += 1;
            }
            tables.extend_from_slice(&jpeg[at..end]);
            scans.push(std::mem::take(&mut tables));
        } else if scans.is_empty() {
            head.extend_from_slice(&jpeg[at..end]);
        } else {
            tables.extend_from_slice(&jpeg[at..end]);
        }
        at = end;
    }
    (head, scans)
}

/// `jpeg` with its scans, each with its data, given `times` over: a decoder that decodes
/// every scan it is handed does the image's work `times` over.
pub fn jpeg_scans_repeated(jpeg: &[u8], times: usize) -> Vec<u8> {
    let (mut out, scans) = jpeg_parts(jpeg);
    for _ in 0..times {
        for scan in &scans {
            out.extend_from_slice(scan);
        }
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// A baseline JPEG frame of `width` x `height` whose scan, given `scans` times, carries no
/// data: a decoder that reads zeros where data runs out decodes every block of it each time
/// (a few hundred bytes; a third of a second of CPU per scan at 50 MP on this machine).
pub fn hollow_jpeg(width: u16, height: u16, scans: usize) -> Vec<u8> {
    let (mut out, parts) = jpeg_parts(&photo_jpeg(16, 16));
    // SOF0: FF C0, length, P, then Y and X.
    if let Some(sof) = out.windows(2).position(|w| w == [0xFF, 0xC0]) {
        out[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
        out[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    }
    let scan = &parts[0];
    let header = 2 + usize::from(u16::from_be_bytes([scan[2], scan[3]]));
    for _ in 0..scans {
        out.extend_from_slice(&scan[..header]);
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// `jpeg` with its first scan reading Huffman tables the file never defines: its headers pass
/// every check, and its decode fails at once (an upload refused by the decode, not the probe).
pub fn jpeg_with_undefined_tables(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    if let Some(sos) = out.windows(2).position(|w| w == [0xFF, 0xDA]) {
        let components = usize::from(out[sos + 4]);
        for c in 0..components {
            out[sos + 6 + 2 * c] = 0x33;
        }
    }
    out
}
