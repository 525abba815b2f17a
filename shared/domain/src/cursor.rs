//! Opaque, tamper-proof pagination cursors.
//!
//! A cursor names a position *between* items (the id of the item it is relative to and the
//! direction to read), never an offset, so pages do not shift while new items arrive. It is
//! bound to the list it came from (`scope`), and signed with HMAC-SHA256: a tampered cursor, or
//! one from another list, is refused with 400 and never reads a wrong page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signature bytes kept in a cursor: 128 bits is ample against forgery and keeps URLs short.
const TAG_LEN: usize = 16;
/// Cursors longer than this are refused before any decoding work.
const MAX_CURSOR_LEN: usize = crate::limits::CURSOR_BYTES.usize();

/// Which way a page reads from its cursor's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// The items that follow `key` in the list's order (`next_page`).
    #[serde(rename = "a")]
    After,
    /// The items that precede `key` in the list's order (`previous_page`).
    #[serde(rename = "b")]
    Before,
}

/// A position in one list.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PageCursor {
    /// Which list: `feed`, or `comments:<post id>`.
    #[serde(rename = "s")]
    pub scope: String,
    #[serde(rename = "d")]
    pub direction: Direction,
    /// The sort key of the item the position is relative to.
    #[serde(rename = "k")]
    pub key: String,
}

/// A cursor that is tampered, from another list, or not a cursor at all (`invalid_cursor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("`cursor` is not valid for this list")]
pub struct InvalidCursor;

/// Signs cursors with one key and checks them with it or with the keys it replaced (a rotated
/// secret's previous version), so cursors in clients' hands survive a rotation.
#[derive(Clone)]
pub struct CursorCodec {
    /// The signing key first.
    macs: Vec<HmacSha256>,
}

fn hmac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

impl CursorCodec {
    pub fn new(secret: &[u8]) -> Self {
        CursorCodec {
            macs: vec![hmac(secret)],
        }
    }

    /// Signs with the first key (a secret's current version); checks with every key given
    /// (its previous version too).
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Self {
        CursorCodec {
            macs: keys.into_iter().map(hmac).collect(),
        }
    }

    pub fn encode(&self, cursor: &PageCursor) -> String {
        let payload = serde_json::to_vec(cursor).unwrap_or_default();
        let Some(mut mac) = self.macs.first().cloned() else {
            return String::new();
        };
        mac.update(&payload);
        let tag = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(&tag[..TAG_LEN])
        )
    }

    /// Decodes a cursor for `scope`; anything tampered, foreign or malformed is refused.
    pub fn decode(&self, raw: &str, scope: &str) -> Result<PageCursor, InvalidCursor> {
        let invalid = || InvalidCursor;
        if raw.len() > MAX_CURSOR_LEN {
            return Err(invalid());
        }
        let (payload_b64, tag_b64) = raw.split_once('.').ok_or_else(invalid)?;
        let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| invalid())?;
        let tag = URL_SAFE_NO_PAD.decode(tag_b64).map_err(|_| invalid())?;
        if tag.len() != TAG_LEN {
            return Err(invalid());
        }
        // Constant-time comparison of the truncated tag, with each key.
        let signed = self.macs.iter().any(|mac| {
            let mut mac = mac.clone();
            mac.update(&payload);
            mac.verify_truncated_left(&tag).is_ok()
        });
        if !signed {
            return Err(invalid());
        }
        let cursor: PageCursor = serde_json::from_slice(&payload).map_err(|_| invalid())?;
        if cursor.scope != scope {
            return Err(invalid());
        }
        Ok(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PageCursor {
        PageCursor {
            scope: "feed".into(),
            direction: Direction::After,
            key: "01JD0000000000000000000000".into(),
        }
    }

    #[test]
    fn round_trips() {
        let codec = CursorCodec::new(b"secret");
        let encoded = codec.encode(&sample());
        assert_eq!(codec.decode(&encoded, "feed").unwrap(), sample());
        assert!(
            encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
    }

    #[test]
    fn tampered_payload_or_tag_is_refused() {
        let codec = CursorCodec::new(b"secret");
        let encoded = codec.encode(&sample());
        let (payload, tag) = encoded.split_once('.').unwrap();
        // A cursor forged with another key claims a different position.
        let forged_payload = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&PageCursor {
                key: "01JZZZZZZZZZZZZZZZZZZZZZZZ".into(),
                ..sample()
            })
            .unwrap(),
        );
        for bad in [
            format!("{forged_payload}.{tag}"),
            format!("{payload}.{}", URL_SAFE_NO_PAD.encode([0u8; TAG_LEN])),
            format!("{payload}.{}", &tag[..tag.len() - 2]),
            format!("{payload}{tag}"),
            "".to_string(),
            "!!!.???".to_string(),
            "x".repeat(MAX_CURSOR_LEN + 1),
        ] {
            assert_eq!(codec.decode(&bad, "feed"), Err(InvalidCursor), "{bad}");
        }
    }

    #[test]
    fn a_cursor_from_another_key_or_list_is_refused() {
        let ours = CursorCodec::new(b"secret");
        let theirs = CursorCodec::new(b"other secret");
        assert!(ours.decode(&theirs.encode(&sample()), "feed").is_err());
        let comments = PageCursor {
            scope: "comments:01JD".into(),
            ..sample()
        };
        assert!(ours.decode(&ours.encode(&comments), "feed").is_err());
        assert!(ours.decode(&ours.encode(&comments), "comments:01JD").is_ok());
    }

    #[test]
    fn after_a_rotation_old_cursors_still_read_and_new_ones_use_the_new_key() {
        let old = CursorCodec::new(b"old-key");
        let issued = old.encode(&sample());
        let rotated = CursorCodec::from_keys([b"new-key".as_slice(), b"old-key".as_slice()]);
        assert_eq!(rotated.decode(&issued, "feed").unwrap(), sample());
        let fresh = rotated.encode(&sample());
        assert!(old.decode(&fresh, "feed").is_err(), "signed with the new key");
        assert_eq!(CursorCodec::new(b"new-key").decode(&fresh, "feed").unwrap(), sample());
        // Once the old version is gone, its cursors are refused.
        let later = CursorCodec::new(b"newer-key");
        assert!(later.decode(&issued, "feed").is_err());
    }
}
