//! `multipart/form-data` request bodies (RFC 7578), as apps upload media, and
//! the PNG images a journey can have generated instead of shipping a file.
//!
//! The boundary is fixed, so the content type is a constant; a body whose parts
//! contain it is refused (a `config` error) rather than sent broken. A generated
//! PNG is a valid image (uncompressed deflate blocks, CRCs and Adler-32 right),
//! so a server that decodes uploads, as Mastodon does, accepts it; its pixels
//! depend on a seed (the run's nonce), so no two runs upload the same bytes.

use bytes::Bytes;

use crate::spec::journey::{FileContent, FilePart};

const BOUNDARY: &str = "fediprobe-multipart-boundary-5f0e3c9a7b21";
/// The content type of every multipart body fediprobe sends.
pub const CONTENT_TYPE: &str = "multipart/form-data; boundary=fediprobe-multipart-boundary-5f0e3c9a7b21";

/// One rendered field of a multipart body.
pub enum Field<'a> {
    Text { name: &'a str, value: String },
    File { name: &'a str, filename: String, content_type: &'a str, bytes: Bytes },
}

/// Why a multipart body could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MultipartError {
    #[error("the multipart field `{0}` contains the body's boundary")]
    BoundaryInContent(String),
    #[error("the multipart field name or file name `{0}` contains a quote, CR or LF")]
    BadName(String),
}

/// The bytes of a file part: the file read at load, or a PNG generated from `seed`.
pub fn file_bytes(part: &FilePart, seed: &str) -> Bytes {
    match &part.content {
        FileContent::Bytes(bytes) => Bytes::from(bytes.as_ref().clone()),
        FileContent::Png { size } => Bytes::from(png(*size, seed)),
    }
}

/// The body: each field with its headers, between boundaries.
pub fn encode(fields: &[Field<'_>]) -> Result<Bytes, MultipartError> {
    let mut out = Vec::new();
    for field in fields {
        let (name, disposition, content_type, content): (&str, String, Option<&str>, &[u8]) = match field {
            Field::Text { name, value } => (name, format!("form-data; name=\"{name}\""), None, value.as_bytes()),
            Field::File { name, filename, content_type, bytes } => {
                check_name(filename)?;
                (name, format!("form-data; name=\"{name}\"; filename=\"{filename}\""), Some(content_type), bytes)
            }
        };
        check_name(name)?;
        if contains(content, BOUNDARY.as_bytes()) {
            return Err(MultipartError::BoundaryInContent(name.to_owned()));
        }
        out.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n").as_bytes());
        if let Some(content_type) = content_type {
            out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    Ok(Bytes::from(out))
}

fn check_name(name: &str) -> Result<(), MultipartError> {
    if name.contains(['"', '\r', '\n']) { Err(MultipartError::BadName(name.to_owned())) } else { Ok(()) }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A `size`×`size` RGB PNG whose pixels are a gradient shifted by `seed`.
pub fn png(size: u32, seed: &str) -> Vec<u8> {
    let shift = seed.bytes().fold(0u8, |acc, b| acc.wrapping_mul(31).wrapping_add(b));
    let side = size as usize;
    // Each scanline: filter type 0, then RGB triples.
    let mut raw = Vec::with_capacity(side * (1 + 3 * side));
    for y in 0..side {
        raw.push(0);
        for x in 0..side {
            raw.extend_from_slice(&[(x as u8).wrapping_add(shift), (y as u8).wrapping_add(shift), shift ^ 0x5a]);
        }
    }
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&size.to_be_bytes());
    header.extend_from_slice(&size.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]); // 8 bits, RGB, deflate, adaptive filtering, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    chunk(&mut out, b"IEND", &[]);
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// A zlib stream of uncompressed ("stored") deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = if data.is_empty() { vec![&[]] } else { data.chunks(0xffff).collect() };
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for byte in data {
        a = (a + u32::from(*byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_png_has_valid_chunks_and_differs_per_seed() {
        let image = png(70, "n1");
        assert!(image.starts_with(b"\x89PNG\r\n\x1a\n"));
        // Walk the chunks: each one's CRC must match, and IEND must end the file.
        let mut at = 8;
        let mut kinds = Vec::new();
        while at < image.len() {
            let len = u32::from_be_bytes(image[at..at + 4].try_into().unwrap()) as usize;
            let kind = &image[at + 4..at + 8];
            let data = &image[at + 8..at + 8 + len];
            let crc = u32::from_be_bytes(image[at + 8 + len..at + 12 + len].try_into().unwrap());
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(kind);
            hasher.update(data);
            assert_eq!(hasher.finalize(), crc, "chunk {}", String::from_utf8_lossy(kind));
            kinds.push(String::from_utf8_lossy(kind).into_owned());
            at += 12 + len;
        }
        assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
        assert_eq!(&image[16..24], &[0, 0, 0, 70, 0, 0, 0, 70]);
        assert_ne!(png(70, "n1"), png(70, "n2"));
    }

    #[test]
    fn the_stored_zlib_stream_holds_the_data_and_its_checksum() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let stream = zlib_stored(&data);
        // Two stored blocks (65535 + 4465 bytes), the first not final, the second final.
        assert_eq!(stream[2], 0);
        assert_eq!(u16::from_le_bytes([stream[3], stream[4]]), 0xffff);
        let second = 2 + 5 + 0xffff;
        assert_eq!(stream[second], 1);
        assert_eq!(u16::from_le_bytes([stream[second + 1], stream[second + 2]]) as usize, data.len() - 0xffff);
        assert_eq!(&stream[second + 5..second + 5 + 10], &data[0xffff..0xffff + 10]);
        // Adler-32 of "Wikipedia" is 0x11E60398 (its article's worked example).
        assert_eq!(&zlib_stored(b"Wikipedia")[2 + 5 + 9..], &0x11E6_0398u32.to_be_bytes());
    }

    #[test]
    fn a_body_lists_each_field_between_boundaries_and_refuses_the_boundary_inside() {
        let fields = [
            Field::Text { name: "description", value: "alt text".into() },
            Field::File {
                name: "file",
                filename: "a.png".into(),
                content_type: "image/png",
                bytes: Bytes::from_static(b"PNG"),
            },
        ];
        let body = String::from_utf8(encode(&fields).unwrap().to_vec()).unwrap();
        assert_eq!(
            body,
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\nalt text\r\n\
                 --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\
                 Content-Type: image/png\r\n\r\nPNG\r\n--{BOUNDARY}--\r\n"
            )
        );
        assert!(CONTENT_TYPE.ends_with(BOUNDARY));
        let inside = [Field::Text { name: "x", value: format!("a--{BOUNDARY}b") }];
        assert!(matches!(encode(&inside), Err(MultipartError::BoundaryInContent(name)) if name == "x"));
        let quoted = [Field::Text { name: "a\"b", value: String::new() }];
        assert!(matches!(encode(&quoted), Err(MultipartError::BadName(_))));
    }
}
