//! WebSocket connections and subscriptions: capped per user and per connection.

use super::items::{decode, get_s, key, n, s, signed};
use super::rate::RateToken;
use super::tx::{applied, built};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use serde::Deserialize;

use super::error::{Entity, StoreError};
use super::keys;
use super::{Item, Table};

/// An open WebSocket connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    pub user_id: String,
    /// When the token it was opened with expires (its socket is closed then).
    pub expires_at: i64,
    /// When its item expires (Unix seconds): no later than two hours after `$connect`, nor
    /// than its token's expiry and leeway. Its subscriptions expire with it.
    pub ttl: i64,
    /// Opened with a moderator's token: blocks never filter what it hears.
    pub moderator: bool,
    /// Posts this connection follows.
    pub subscriptions: Vec<String>,
}

/// Most subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS: usize = forum_domain::limits::SUBSCRIPTIONS_PER_CONNECTION.usize();

/// A connection to push to, and when the token it was opened with expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub connection_id: String,
    /// Whose connection it is: a send leaves out the users who block whoever it is about.
    pub user_id: String,
    pub expires_at: i64,
    /// Opened with a moderator's token: a send leaves it in whoever its owner blocks (a
    /// block never filters a moderator's view).
    pub moderator: bool,
    /// When `$connect` stored it (Unix seconds), as a connection item says; a subscription
    /// does not say (a connection subscribes only once open).
    pub connected_at: Option<i64>,
}

/// Whose a connection or subscription is, as its items and both indexes carry it: a send
/// leaves out the connections of users who block whoever it is about. Not `user_id`, which
/// posts and comments carry too: projected under that name, every entry of the feed index
/// would grow, and a feed page's Query with it.
const OWNER: &str = "conn_user_id";

/// Set (to `true`) on a moderator's connection and subscription entries, and projected by
/// both indexes with the owner; absent on everyone else's, which keeps their entries small.
const MODERATOR: &str = "conn_moderator";

/// Live WebSocket connections one user may hold at once.
pub const MAX_CONNECTIONS_PER_USER: u32 = forum_domain::limits::CONNECTIONS_PER_USER.u32();

/// A connection item as stored. Its owner and its token's expiry are required: a connection
/// that says neither is never read as anyone's, nor as never expiring.
#[derive(Deserialize)]
struct ConnectionRecord {
    user_id: String,
    expires_at: i64,
    ttl: i64,
    #[serde(default, rename = "conn_moderator")]
    moderator: bool,
    /// Absent when it follows nothing (DynamoDB stores no empty set).
    #[serde(default)]
    subs: Vec<String>,
}

pub(super) fn connection_from_item(connection_id: &str, item: &Item) -> Result<Connection, StoreError> {
    let record: ConnectionRecord = decode(item)?;
    Ok(Connection {
        id: connection_id.to_string(),
        user_id: record.user_id,
        expires_at: record.expires_at,
        ttl: record.ttl,
        moderator: record.moderator,
        subscriptions: record.subs,
    })
}

/// What a send needs of a connection or subscription entry: whose it is and when its token
/// expires (both required) and, for a connection, when it was stored.
#[derive(Deserialize)]
struct RecipientRecord {
    #[serde(rename = "conn_user_id")]
    owner: String,
    expires_at: i64,
    #[serde(default, rename = "conn_moderator")]
    moderator: bool,
    #[serde(default)]
    connected_at: Option<i64>,
}

impl Table {
    /// Stores a connection (after `$connect` was authorized) for a token valid until
    /// `expires_at`, a moderator's if `moderator`; the item expires at `ttl`. The connection takes one of the user's
    /// [`MAX_CONNECTIONS_PER_USER`] slot items in the same transaction, so concurrent connects
    /// cannot exceed the cap; a slot whose connection expired counts as free.
    pub async fn put_connection(
        &self,
        connection_id: &str,
        user_id: &str,
        expires_at: i64,
        ttl: i64,
        connected_at: i64,
        moderator: bool,
    ) -> Result<(), StoreError> {
        let now = chrono::Utc::now().timestamp();
        // Start at a slot of the id's own, so a user's concurrent connects rarely collide.
        let start = connection_id
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        for probe in 0..MAX_CONNECTIONS_PER_USER {
            let slot = (start.wrapping_add(probe)) % MAX_CONNECTIONS_PER_USER;
            let mut item = key(keys::conn_pk(connection_id), keys::CONN_SK);
            item.insert("type".into(), s("connection"));
            item.insert("connection_id".into(), s(connection_id));
            item.insert("user_id".into(), s(user_id));
            // The owner again, under the name both indexes project (module docs).
            item.insert(OWNER.into(), s(user_id));
            if moderator {
                item.insert(MODERATOR.into(), AttributeValue::Bool(true));
            }
            item.insert("expires_at".into(), signed(expires_at));
            item.insert("connected_at".into(), signed(connected_at));
            item.insert("slot".into(), n(u64::from(slot)));
            item.insert("ttl".into(), signed(ttl));
            item.insert(keys::FEED_PK.into(), s(keys::CONNECTIONS_PARTITION));
            item.insert(keys::FEED_SK.into(), s(keys::conn_pk(connection_id)));
            item.insert(keys::USER_PK.into(), s(keys::user_pk(user_id)));
            item.insert(keys::USER_SK.into(), s(keys::conn_pk(connection_id)));
            let mut slot_item = key(keys::user_pk(user_id), keys::conn_slot_sk(slot));
            slot_item.insert("type".into(), s("connection_slot"));
            slot_item.insert("connection_id".into(), s(connection_id));
            slot_item.insert("ttl".into(), signed(ttl));
            let claim = built(
                Put::builder()
                    .table_name(&self.name)
                    .set_item(Some(slot_item))
                    .condition_expression("attribute_not_exists(pk) OR #ttl < :now")
                    .expression_attribute_names("#ttl", "ttl")
                    .expression_attribute_values(":now", signed(now))
                    .build(),
            )?;
            let actions = vec![TransactWriteItem::builder().put(claim).build(), self.put(item, None)?];
            match self.transact(actions).await? {
                Ok(()) => return Ok(()),
                Err(c) if c.failed(0) => continue,
                Err(c) => return Err(StoreError::Internal(format!("storing a connection: {:?}", c.codes))),
            }
        }
        Err(StoreError::TooManyConnections {
            max: MAX_CONNECTIONS_PER_USER,
        })
    }

    pub async fn get_connection(&self, connection_id: &str) -> Result<Option<Connection>, StoreError> {
        let item = self
            .get_one(key(keys::conn_pk(connection_id), keys::CONN_SK), true, None)
            .await?;
        item.as_ref()
            .map(|item| connection_from_item(connection_id, item))
            .transpose()
    }

    /// Removes a connection and its subscriptions (on `$disconnect`, or a `410 Gone`).
    pub async fn delete_connection(&self, connection_id: &str) -> Result<(), StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(key(keys::conn_pk(connection_id), keys::CONN_SK)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await?;
        let Some(old) = out.attributes() else { return Ok(()) };
        let connection = connection_from_item(connection_id, old)?;
        // Subscriptions first: they are what fan-out reads, and must not outlive the
        // connection even if freeing its slot fails (a slot also frees itself when it expires).
        self.batch_delete(self.subscription_keys(connection_id, &connection.subscriptions))
            .await?;
        if let Some(slot) = old
            .get("slot")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u32>().ok())
        {
            // Only if the slot is still this connection's (an expired one may be taken again).
            let freed = self
                .client
                .delete_item()
                .table_name(&self.name)
                .set_key(Some(key(keys::user_pk(&connection.user_id), keys::conn_slot_sk(slot))))
                .condition_expression("connection_id = :id")
                .expression_attribute_values(":id", s(connection_id))
                .send()
                .await;
            // Not freed: another connection holds the slot now, which is fine.
            applied(freed)?;
        }
        Ok(())
    }

    /// Follows posts: the subscription items (found by post, carrying the connection's token
    /// expiry, expiring with the connection) and their list on the connection (found by
    /// connection, for clean-up). Only posts `connection` (as just read) does not follow yet
    /// are written, and none when that would pass [`MAX_SUBSCRIPTIONS`]: a message repeating
    /// what is followed, or one over the cap, writes nothing (each written or undone item is a
    /// write unit, and a client may send many); one that writes takes a `rate` token first.
    /// The cap is also a condition on the list's size in the same write that grows it, so
    /// concurrent messages cannot pass it together.
    pub async fn subscribe(
        &self,
        connection: &Connection,
        post_ids: &[String],
        rate: &RateToken,
    ) -> Result<(), StoreError> {
        let mut new_ids: Vec<String> = Vec::new();
        for id in post_ids {
            if !connection.subscriptions.contains(id) && !new_ids.contains(id) {
                new_ids.push(id.clone());
            }
        }
        if new_ids.is_empty() {
            return Ok(());
        }
        if connection.subscriptions.len() + new_ids.len() > MAX_SUBSCRIPTIONS {
            return Err(StoreError::TooManySubscriptions { max: MAX_SUBSCRIPTIONS });
        }
        self.charge_rate(rate).await?;
        // Subscription items first, then their list on the connection, only if it still exists
        // and has room: a connection deleted meanwhile (a 410 from another fan-out) either saw
        // the list and removes these items itself, or makes the update fail and we remove them
        // here. Either way no subscription outlives its connection.
        let items = new_ids
            .iter()
            .map(|pid| {
                let mut item = key(keys::sub_pk(pid), keys::conn_pk(&connection.id));
                item.insert("type".into(), s("subscription"));
                item.insert("connection_id".into(), s(&connection.id));
                item.insert(OWNER.into(), s(&connection.user_id));
                if connection.moderator {
                    item.insert(MODERATOR.into(), AttributeValue::Bool(true));
                }
                item.insert("expires_at".into(), signed(connection.expires_at));
                item.insert("ttl".into(), signed(connection.ttl));
                item
            })
            .collect();
        self.batch_put(items).await?;
        // Room for the new ids even if another message listed some meanwhile: the cap is
        // never exceeded.
        let room = MAX_SUBSCRIPTIONS.saturating_sub(new_ids.len());
        let listed = self
            .change_subs(&connection.id, "ADD", new_ids.clone())
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(subs) OR size(subs) <= :room)")
            .expression_attribute_values(":room", n(room as u64))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let seen = match listed {
            Ok(_) => return Ok(()),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failure)) => failure.item().cloned(),
                _ => return Err(err.into()),
            },
        };
        // Undo only the items this call added: an id listed meanwhile is another message's.
        let old = seen
            .as_ref()
            .map(|item| connection_from_item(&connection.id, item))
            .transpose()?;
        let added: Vec<String> = new_ids
            .into_iter()
            .filter(|id| !old.as_ref().is_some_and(|c| c.subscriptions.contains(id)))
            .collect();
        self.batch_delete(self.subscription_keys(&connection.id, &added))
            .await?;
        match old {
            None => Err(StoreError::NotFound(Entity::Connection)),
            Some(_) => Err(StoreError::TooManySubscriptions { max: MAX_SUBSCRIPTIONS }),
        }
    }

    pub(super) fn subscription_keys(&self, connection_id: &str, post_ids: &[String]) -> Vec<Item> {
        post_ids
            .iter()
            .map(|pid| key(keys::sub_pk(pid), keys::conn_pk(connection_id)))
            .collect()
    }

    /// Stops following posts: those of `post_ids` that `connection` (as just read) follows,
    /// nothing for the rest. The list first, then the items: an item then never outlives its
    /// place in the list, even beside a concurrent `subscribe` of the same post (which writes
    /// its item before listing it), so no subscription is left unlisted, to be sent to past
    /// the cap and after `$disconnect`. One that writes takes a `rate` token first.
    pub async fn unsubscribe(
        &self,
        connection: &Connection,
        post_ids: &[String],
        rate: &RateToken,
    ) -> Result<(), StoreError> {
        let listed: Vec<String> = post_ids
            .iter()
            .filter(|id| connection.subscriptions.contains(id))
            .cloned()
            .collect();
        if listed.is_empty() {
            return Ok(());
        }
        self.charge_rate(rate).await?;
        // Only an existing connection's list changes (no key-only item for a gone one).
        let unlisted = self
            .change_subs(&connection.id, "DELETE", listed.clone())
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        // A connection that is gone took its subscriptions with it (`delete_connection`).
        if !applied(unlisted)? {
            return Ok(());
        }
        let deleted = self.batch_delete(self.subscription_keys(&connection.id, &listed)).await;
        if deleted.is_err() {
            // Listed again, so the client's retry (or `$disconnect`) finds them and deletes
            // what is left; unlisted, they would be sent to until they expire.
            let relisted = self
                .change_subs(&connection.id, "ADD", listed)
                .condition_expression("attribute_exists(pk)")
                .send()
                .await;
            if let Err(e) = applied(relisted) {
                tracing::warn!(connection_id = %connection.id, error = %e, "unsubscribed items stay unlisted until they expire");
            }
        }
        deleted
    }

    /// An UpdateItem that `ADD`s `post_ids` to a connection's list (`subs`) or `DELETE`s them
    /// from it; the caller adds its condition.
    fn change_subs(
        &self,
        connection_id: &str,
        operation: &str,
        post_ids: Vec<String>,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(keys::conn_pk(connection_id), keys::CONN_SK)))
            .update_expression(format!("{operation} subs :posts"))
            .expression_attribute_values(":posts", AttributeValue::Ss(post_ids))
    }

    /// Every open connection (the feed's audience): a Query of one index partition, paged.
    pub async fn all_connections(&self) -> Result<Vec<Recipient>, StoreError> {
        self.recipients(
            Some(keys::FEED_INDEX),
            keys::FEED_PK,
            keys::CONNECTIONS_PARTITION.to_string(),
            keys::FEED_SK,
        )
        .await
    }

    /// Connections following a post.
    pub async fn subscribers(&self, post_id: &str) -> Result<Vec<Recipient>, StoreError> {
        self.recipients(None, keys::PK, keys::sub_pk(post_id), keys::SK).await
    }

    /// A user's open connections.
    pub async fn user_connections(&self, user_id: &str) -> Result<Vec<Recipient>, StoreError> {
        self.recipients(
            Some(keys::USER_INDEX),
            keys::USER_PK,
            keys::user_pk(user_id),
            keys::USER_SK,
        )
        .await
    }

    /// Connection ids (from `CONN#<id>` sort keys), their owners and their tokens' expiry,
    /// every page.
    pub(super) async fn recipients(
        &self,
        index: Option<&str>,
        pk_attr: &str,
        pk: String,
        sk_attr: &str,
    ) -> Result<Vec<Recipient>, StoreError> {
        const PREFIX: &str = "CONN#";
        let query = self
            .client
            .query()
            .table_name(&self.name)
            .set_index_name(index.map(str::to_string))
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", pk_attr)
            .expression_attribute_names("#sk", sk_attr)
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":prefix", s(PREFIX))
            .projection_expression("#sk, conn_user_id, conn_moderator, expires_at, connected_at");
        let items = self.query_every(query).await?;
        // An entry that says not whose it is or when its token expires is never sent to; the
        // others still are.
        Ok(items
            .iter()
            .filter_map(|item| {
                let id = get_s(item, sk_attr)?.strip_prefix(PREFIX)?.to_string();
                let record: RecipientRecord = decode(item).ok()?;
                Some(Recipient {
                    user_id: record.owner,
                    expires_at: record.expires_at,
                    moderator: record.moderator,
                    connected_at: record.connected_at,
                    connection_id: id,
                })
            })
            .collect())
    }
}
