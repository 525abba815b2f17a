//! Blocks: whom a user blocks. One item per block (`USER#<uid>` / `BLOCK#<blocked>`, for the
//! paginated list and "once") and a set of every blocked id on one item (`USER#<uid>` /
//! `BLOCKS`, bounded by [`MAX_BLOCKS`]), written in the same transaction: lists read the set
//! beside the viewer's likes (no round trip of its own), and a comment's transaction checks
//! the post author's set. Who blocks a user is not bounded, so it is an item per blocker in
//! the blocked user's partition (`BLOCKER#<uid>`), never a set.

use std::collections::HashSet;

use super::items::{decode, encode, get_s, key, s};
use super::page::{HasSortId, ListSpec, Order, Page, blocks_scope};
use super::tx::{applied, built};
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::keys;
use super::{Item, Table};
use forum_domain::cursor::PageCursor;
use forum_domain::limits;

/// Blocks one user may hold (the set item stays far below DynamoDB's 400 KB).
pub const MAX_BLOCKS: usize = limits::BLOCKS_PER_USER.usize();

/// What a list read knows about its viewer: the posts they like among those read, and whom
/// they block.
#[derive(Clone, Debug, Default)]
pub struct ViewerState {
    pub liked: HashSet<String>,
    pub blocked: HashSet<String>,
}

/// Set on a block item once the blocker's inbox is cleaned of the blocked user.
const INBOX_CLEANED: &str = "inbox_cleaned";

/// One block, as the list shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub blocked_id: String,
    pub blocked_at: String,
}

impl HasSortId for Block {
    fn sort_id(&self) -> &str {
        &self.blocked_id
    }
}

/// The ids a `BLOCKS` item holds.
pub(super) fn blocked_set(item: &Item) -> HashSet<String> {
    item.get("blocked")
        .and_then(|v| v.as_ss().ok())
        .map(|ids| ids.iter().cloned().collect())
        .unwrap_or_default()
}

fn block_from_item(item: &Item) -> Result<Block, StoreError> {
    decode(item)
}

impl Table {
    /// `blocker` blocks `blocked`, once: a repeat writes nothing and answers the block as first
    /// made. At most [`MAX_BLOCKS`]. A blocker item goes into the blocked user's partition in
    /// the same transaction, whoever blocks: live events by the blocked user skip the blocker's
    /// sockets but those opened with a moderator's token, and their notifications skip the
    /// blocker. The role is the socket's, not the block's: a block made as a moderator hides
    /// the user from the same person's ordinary sockets, and one made before becoming a
    /// moderator hides nothing from their moderator sockets.
    /// Answers the block, and whether the blocker's inbox was already cleaned of the blocked
    /// user for it ([`Table::mark_inbox_cleaned`]): a new block's is not.
    pub async fn block_user(&self, blocker: &str, blocked: &str, now: &str) -> Result<(Block, bool), StoreError> {
        #[derive(Serialize)]
        struct Record<'a> {
            pk: String,
            sk: String,
            #[serde(rename = "type")]
            kind: &'a str,
            #[serde(flatten)]
            block: &'a Block,
        }
        let block = Block {
            blocked_id: blocked.to_string(),
            blocked_at: now.to_string(),
        };
        let item = encode(&Record {
            pk: keys::user_pk(blocker),
            sk: keys::block_sk(blocked),
            kind: "block",
            block: &block,
        })?;
        let put = built(
            Put::builder()
                .table_name(&self.name)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build(),
        )?;
        let add = built(
            Update::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::user_pk(blocker), keys::BLOCKS_SK)))
                .update_expression("SET #type = :type ADD blocked :ids")
                .condition_expression("attribute_not_exists(blocked) OR size(blocked) < :max")
                .expression_attribute_names("#type", "type")
                .expression_attribute_values(":type", s("blocks"))
                .expression_attribute_values(":ids", AttributeValue::Ss(vec![blocked.to_string()]))
                .expression_attribute_values(":max", AttributeValue::N(MAX_BLOCKS.to_string()))
                .build(),
        )?;
        let mut blocker_item = key(keys::user_pk(blocked), keys::blocker_sk(blocker));
        blocker_item.insert("type".into(), s("blocker"));
        let actions = vec![
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder().update(add).build(),
            self.put(blocker_item, None)?,
        ];
        match self.transact(actions).await? {
            Ok(()) => Ok((block, false)),
            Err(c) if c.failed(0) => match c.item(0) {
                Some(first) => Ok((block_from_item(first)?, first.contains_key(INBOX_CLEANED))),
                None => Err(StoreError::Internal("a failed block put returned no item".into())),
            },
            Err(c) if c.failed(1) => Err(StoreError::TooManyBlocks { max: MAX_BLOCKS }),
            Err(c) => Err(StoreError::Internal(format!("block refused: {:?}", c.codes))),
        }
    }

    /// Records on the block that the blocker's inbox was cleaned of the blocked user, so a
    /// repeat of the block does not read the whole inbox again (a block lifted since is left
    /// alone).
    pub async fn mark_inbox_cleaned(&self, blocker: &str, blocked: &str) -> Result<(), StoreError> {
        let marked = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(keys::user_pk(blocker), keys::block_sk(blocked))))
            .update_expression("SET #cleaned = :yes")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#cleaned", INBOX_CLEANED)
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await;
        applied(marked).map(|_| ())
    }

    /// Lifts a block; `false` when there was none (nothing written).
    pub async fn unblock_user(&self, blocker: &str, blocked: &str) -> Result<bool, StoreError> {
        let delete = built(
            Delete::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::user_pk(blocker), keys::block_sk(blocked))))
                .condition_expression("attribute_exists(pk)")
                .build(),
        )?;
        let remove = built(
            Update::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::user_pk(blocker), keys::BLOCKS_SK)))
                .update_expression("DELETE blocked :ids")
                .expression_attribute_values(":ids", AttributeValue::Ss(vec![blocked.to_string()]))
                .build(),
        )?;
        let actions = vec![
            TransactWriteItem::builder().delete(delete).build(),
            TransactWriteItem::builder().update(remove).build(),
            TransactWriteItem::builder()
                .delete(built(
                    Delete::builder()
                        .table_name(&self.name)
                        .set_key(Some(key(keys::user_pk(blocked), keys::blocker_sk(blocker))))
                        .build(),
                )?)
                .build(),
        ];
        match self.transact(actions).await? {
            Ok(()) => Ok(true),
            Err(c) if c.failed(0) => Ok(false),
            Err(c) => Err(StoreError::Internal(format!("unblock refused: {:?}", c.codes))),
        }
    }

    /// Who blocks `author`: their sockets (but a moderator's) hear nothing `author` writes, and
    /// `author` notifies none of them. A
    /// Query of the blocker items, every page: about 80 bytes each, so 10,000 blockers are one
    /// 1 MB page (about 100 read units); nobody's, for the many users nobody blocks, half a unit.
    pub async fn blockers_of(&self, author: &str) -> Result<HashSet<String>, StoreError> {
        let query = self
            .query_prefix(keys::user_pk(author), keys::BLOCKER_PREFIX)
            .projection_expression("sk");
        Ok(self
            .query_every(query)
            .await?
            .iter()
            .filter_map(|item| {
                get_s(item, keys::SK)?
                    .strip_prefix(keys::BLOCKER_PREFIX)
                    .map(str::to_string)
            })
            .collect())
    }

    /// One page of whom `user` blocks, by user id.
    pub async fn blocks_page(
        &self,
        user: &str,
        position: Option<&PageCursor>,
        limit: usize,
    ) -> Result<Page<Block>, StoreError> {
        let spec = ListSpec {
            scope: blocks_scope(user),
            index: None,
            pk_attr: keys::PK,
            pk: keys::user_pk(user),
            sk_attr: keys::SK,
            sk_prefix: keys::BLOCK_PREFIX,
            order: Order::OldestFirst,
            hide_removed: false,
        };
        self.page(&spec, position, limit, block_from_item).await
    }

    /// The writer is not blocked by `author` (whose post they comment on): a condition of the
    /// comment's own transaction.
    pub(super) fn not_blocked_by(&self, author: &str, writer: &str) -> Result<TransactWriteItem, StoreError> {
        let check = built(
            ConditionCheck::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::user_pk(author), keys::BLOCKS_SK)))
                .condition_expression("attribute_not_exists(blocked) OR NOT contains(blocked, :writer)")
                .expression_attribute_values(":writer", s(writer))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }
}
