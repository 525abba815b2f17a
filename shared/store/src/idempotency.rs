//! Writes safe to retry (`Idempotency-Key`, IETF httpapi draft): a create that carries a key
//! writes, in its own transaction, a record of the key with a fingerprint of the request and
//! the answer it gave. A retry with the same key finds the record (its condition fails, and the
//! cancellation returns it): the same request is answered from it and writes nothing; another
//! request with that key is refused. Keys are per user and kept 24 hours.

use std::fmt;
use std::sync::Arc;

use aws_sdk_dynamodb::types::{Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::items::{decode, encode, signed};
use super::tx::built;
use super::{Item, Table, keys};
use forum_domain::model::Profile;

/// How long a key is remembered.
pub const IDEMPOTENCY_TTL_SECS: i64 = forum_domain::limits::IDEMPOTENCY_KEY_SECS.i64();

/// An answer as given, to be given again: its status, body and `Location`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// Renders the answer a write will give once committed, from the author as shown (`None`: as
/// the handler already knows them; a write that refreshes the profile passes the one written).
pub type RenderAnswer = dyn Fn(Option<&Profile>) -> StoredAnswer + Send + Sync;

/// The key a request carries, and what identifies the request (what a retry sends again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestKey {
    /// SHA-256 of the key, hex: the key itself may hold any character.
    pub key_hash: String,
    /// SHA-256 of the method, path and content, hex.
    pub fingerprint: String,
}

/// A create's key and how to render its answer.
#[derive(Clone)]
pub struct Idempotency {
    pub key: RequestKey,
    pub render: Arc<RenderAnswer>,
}

impl fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A key record (`USER#<uid>` / `IDEM#<key hash>`).
#[derive(Serialize, Deserialize)]
struct KeyRecord {
    fingerprint: String,
    answer: StoredAnswer,
    /// Unix seconds; DynamoDB's TTL removes it (late, so conditions compare it too).
    ttl: i64,
}

impl Table {
    /// The record of `idempotency`'s key, put only if no live record holds the key.
    pub(super) fn key_record(
        &self,
        user_id: &str,
        idempotency: &Idempotency,
        shown: Option<&Profile>,
        now: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        #[derive(Serialize)]
        struct Keyed<'a> {
            pk: String,
            sk: String,
            #[serde(rename = "type")]
            kind: &'a str,
            #[serde(flatten)]
            record: KeyRecord,
        }
        let item = encode(&Keyed {
            pk: keys::user_pk(user_id),
            sk: keys::idempotency_sk(&idempotency.key.key_hash),
            kind: "idempotency",
            record: KeyRecord {
                fingerprint: idempotency.key.fingerprint.clone(),
                answer: (idempotency.render)(shown),
                ttl: now + IDEMPOTENCY_TTL_SECS,
            },
        })?;
        let put = built(
            Put::builder()
                .table_name(&self.name)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk) OR #ttl < :now")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":now", signed(now))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build(),
        )?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

impl Table {
    /// Forgets a key whose write is known to have failed after it committed (a direct
    /// upload whose bytes could not be stored), so a retry runs again.
    pub async fn forget_key(&self, user_id: &str, idempotency: &Idempotency) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.name)
            .key("pk", super::items::s(keys::user_pk(user_id)))
            .key("sk", super::items::s(keys::idempotency_sk(&idempotency.key.key_hash)))
            .condition_expression("fingerprint = :fingerprint")
            .expression_attribute_values(":fingerprint", super::items::s(&idempotency.key.fingerprint))
            .send()
            .await?;
        Ok(())
    }
}

impl Table {
    /// What a keyed create that cannot run (any more, or yet) had answered, if it ran: its answer
    /// (`Replayed`) for the same request, `IdempotencyKeyReused` for another; `Ok` if the key
    /// is unused. For a create refused before its transaction by what it reads first (a
    /// comment's post, deleted since the comment was written), or before work a retry need
    /// not repeat (an upload's decode).
    pub async fn earlier_answer(&self, user_id: &str, key: &RequestKey, now: i64) -> Result<(), StoreError> {
        let record = super::items::key(keys::user_pk(user_id), keys::idempotency_sk(&key.key_hash));
        match self.get_one(record, true, None).await? {
            Some(item) if decode::<KeyRecord>(&item).is_ok_and(|record| record.ttl >= now) => {
                Err(key_taken(Some(&item), key))
            }
            _ => Ok(()),
        }
    }
}

/// What a failed key condition means: the same request again (its answer), or another
/// request reusing the key.
pub(super) fn key_taken(seen: Option<&Item>, key: &RequestKey) -> StoreError {
    let Some(seen) = seen else {
        return StoreError::Internal("a failed idempotency key put returned no item".into());
    };
    match decode::<KeyRecord>(seen) {
        Ok(record) if record.fingerprint == key.fingerprint => StoreError::Replayed(record.answer),
        Ok(_) => StoreError::IdempotencyKeyReused,
        Err(e) => e,
    }
}

use super::error::StoreError;
