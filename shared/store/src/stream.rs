//! The table's stream: records in DynamoDB JSON to items, items to domain changes.

use super::items::{comment_from_item, get_s, media_from_item, post_from_item, require_s};
use aws_sdk_dynamodb::types::AttributeValue;

use super::Item;
use super::error::StoreError;
use forum_domain::model::{Comment, Media, Post};

/// A committed change, as the table stream reports it, in domain terms.
#[derive(Clone, Debug)]
pub enum Change {
    PostCreated(Post),
    PostChanged {
        old: Post,
        new: Post,
    },
    PostDeleted(Post),
    CommentCreated(Comment),
    CommentDeleted(Comment),
    MediaChanged {
        old: Option<Media>,
        new: Media,
    },
    /// An upload's record was deleted: released by its post, or expired unclaimed (TTL).
    MediaRemoved(Media),
    /// An account is now shown under a name with another key: the old claim can go.
    Renamed {
        user_id: String,
        old_key: String,
    },
    /// Items whose changes nobody is told about (likes, profiles, connections, rate windows).
    Other,
}

impl Change {
    /// Reads a stream record's images (already in SDK form).
    pub fn from_images(old: Option<&Item>, new: Option<&Item>) -> Result<Change, StoreError> {
        let kind = new.or(old).and_then(|i| get_s(i, "type"));
        Ok(match (kind.as_deref(), old, new) {
            (Some("post"), None, Some(n)) => Change::PostCreated(post_from_item(n)?),
            (Some("post"), Some(o), Some(n)) => Change::PostChanged {
                old: post_from_item(o)?,
                new: post_from_item(n)?,
            },
            (Some("post"), Some(o), None) => Change::PostDeleted(post_from_item(o)?),
            (Some("comment"), None, Some(n)) => Change::CommentCreated(comment_from_item(n)?),
            (Some("comment"), Some(o), None) => Change::CommentDeleted(comment_from_item(o)?),
            (Some("media"), o, Some(n)) => Change::MediaChanged {
                old: o.map(media_from_item).transpose()?,
                new: media_from_item(n)?,
            },
            (Some("media"), Some(o), None) => Change::MediaRemoved(media_from_item(o)?),
            (Some("profile"), Some(o), Some(n)) => match (get_s(o, "name_key"), get_s(n, "name_key")) {
                (Some(old_key), new_key) if Some(&old_key) != new_key.as_ref() => Change::Renamed {
                    user_id: require_s(n, "user_id")?,
                    old_key,
                },
                _ => Change::Other,
            },
            _ => Change::Other,
        })
    }
}

/// Reads an attribute in DynamoDB's JSON form (`{"S": "x"}`, `{"N": "1"}`, ...), as stream
/// records carry them.
fn attribute_from_json(value: &serde_json::Value) -> Option<AttributeValue> {
    let (kind, inner) = value.as_object()?.iter().next()?;
    Some(match kind.as_str() {
        "S" => AttributeValue::S(inner.as_str()?.to_string()),
        "N" => AttributeValue::N(inner.as_str()?.to_string()),
        "BOOL" => AttributeValue::Bool(inner.as_bool()?),
        "NULL" => AttributeValue::Null(true),
        "SS" => AttributeValue::Ss(
            inner
                .as_array()?
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
        "NS" => AttributeValue::Ns(
            inner
                .as_array()?
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
        "L" => AttributeValue::L(inner.as_array()?.iter().filter_map(attribute_from_json).collect()),
        "M" => AttributeValue::M(item_from_json(inner)?),
        _ => return None,
    })
}

/// An item in DynamoDB's JSON form.
pub fn item_from_json(value: &serde_json::Value) -> Option<Item> {
    Some(
        value
            .as_object()?
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), attribute_from_json(v)?)))
            .collect(),
    )
}

impl Change {
    /// Reads a Lambda stream record (`dynamodb.OldImage` / `NewImage` in DynamoDB JSON).
    pub fn from_record(record: &serde_json::Value) -> Result<Change, StoreError> {
        let images = &record["dynamodb"];
        let old = images.get("OldImage").and_then(item_from_json);
        let new = images.get("NewImage").and_then(item_from_json);
        Change::from_images(old.as_ref(), new.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_images_are_read_from_dynamodb_json() {
        let json = serde_json::json!({
            "pk": {"S": "POST#1"}, "like_count": {"N": "4"}, "ok": {"BOOL": true},
            "subs": {"SS": ["a", "b"]}, "nested": {"M": {"x": {"L": [{"S": "y"}, {"NULL": true}]}}}
        });
        let item = item_from_json(&json).unwrap();
        assert_eq!(item["pk"], AttributeValue::S("POST#1".into()));
        assert_eq!(item["like_count"], AttributeValue::N("4".into()));
        assert_eq!(item["ok"], AttributeValue::Bool(true));
        assert_eq!(item["subs"], AttributeValue::Ss(vec!["a".into(), "b".into()]));
        let AttributeValue::M(nested) = &item["nested"] else {
            panic!("map")
        };
        assert_eq!(
            nested["x"],
            AttributeValue::L(vec![AttributeValue::S("y".into()), AttributeValue::Null(true)])
        );
    }
}
