//! Comments: create, edit, delete (each counted on its post in the same transaction), list.

use super::activity::{CountedWrite, Listed};
use super::items::{comment_from_item, comment_item, get_s, key, mentions_value, s};
use super::page::{HasSortId, ListSpec, Order, Page, comments_scope, user_comments_scope};
use super::posts::{Editor, OWN_LIVE};
use super::rate::RateToken;
use super::tx::{Cancelled, built};
use aws_sdk_dynamodb::types::{Delete, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};

use super::Table;
use super::error::{Entity, StoreError};
use super::keys;
use forum_domain::cursor::PageCursor;
use forum_domain::model::{Comment, Profile};

/// A comment edit/delete transaction failed: the post is gone (404), the comment is gone
/// (404), or it is someone else's (403).
pub(super) fn comment_write_failure(c: &Cancelled) -> StoreError {
    // Action 0 is the post check/counter, action 1 the comment.
    if c.failed(0) {
        StoreError::NotFound(Entity::Post)
    } else if c.failed(1) && c.item(1).is_some_and(|seen| !seen.contains_key(keys::REMOVED_ATTR)) {
        StoreError::NotOwner(Entity::Comment)
    } else {
        StoreError::NotFound(Entity::Comment)
    }
}

impl Table {
    /// Adds a comment, counts it on the post (which must exist), refreshes the author's
    /// profile (when it changed) and takes a rate-limit token: one transaction. `post_author`
    /// wrote the post: a comment by someone they block is refused in the same transaction.
    pub async fn create_comment(
        &self,
        comment: &Comment,
        author: Option<&Profile>,
        rate: &RateToken,
        post_author: &str,
    ) -> Result<Option<Profile>, StoreError> {
        let actions = vec![
            self.take_rate_token(rate)?,
            self.bump_post(&comment.post_id, "comment_count", 1)?,
            self.put(comment_item(comment)?, Some("attribute_not_exists(pk)"))?,
            self.not_blocked_by(post_author, &comment.user_id)?,
            self.count_listing(&comment.user_id, Listed::Comments, 1)?,
        ];
        match self
            .transact_as_author(actions, author, &comment.created_at, rate)
            .await?
        {
            Ok(written) => Ok(written),
            Err(c) if c.failed(1) => Err(StoreError::NotFound(Entity::Post)),
            Err(c) if c.failed(3) => Err(StoreError::BlockedByAuthor),
            Err(c) if c.failed(0) => Err(rate.refused()),
            Err(c) => Err(StoreError::Internal(format!("comment write refused: {:?}", c.codes))),
        }
    }

    /// Edits a comment if `caller` wrote it and its post still exists, taking a rate-limit
    /// token: one transaction.
    pub async fn update_comment(
        &self,
        post_id: &str,
        comment_id: &str,
        content: &str,
        mentions: &[String],
        editor: Editor<'_>,
    ) -> Result<Option<Profile>, StoreError> {
        let Editor {
            caller,
            edited_at,
            rate,
            author,
        } = editor;
        // Who the new text mentions, resolved now (the stream tells those it did not before).
        let mut update = Update::builder()
            .table_name(&self.name)
            .set_key(Some(key(keys::post_pk(post_id), keys::comment_sk(comment_id))));
        update = if mentions.is_empty() {
            update.update_expression("SET content = :content, edited_at = :edited_at REMOVE mentions")
        } else {
            update
                .update_expression("SET content = :content, edited_at = :edited_at, mentions = :mentions")
                .expression_attribute_values(":mentions", mentions_value(mentions))
        };
        let update = built(
            update
                .condition_expression(OWN_LIVE)
                .expression_attribute_values(":content", s(content))
                .expression_attribute_values(":edited_at", s(edited_at))
                .expression_attribute_values(":caller", s(caller))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build(),
        )?;
        let actions = vec![
            self.post_exists_check(post_id)?,
            TransactWriteItem::builder().update(update).build(),
            self.take_rate_token(rate)?,
        ];
        match self.transact_as_author(actions, author, edited_at, rate).await? {
            Ok(written) => Ok(written),
            // Over the limit only matters for an edit that could otherwise have happened.
            Err(c) if c.failed(2) && !c.failed(0) && !c.failed(1) => Err(rate.refused()),
            Err(c) => Err(comment_write_failure(&c)),
        }
    }

    /// Deletes a comment if `caller` wrote it, and uncounts it on its post: one transaction.
    /// A post a moderator removed still lets its commenters delete what they wrote there.
    pub async fn delete_comment(&self, post_id: &str, comment_id: &str, caller: &str) -> Result<(), StoreError> {
        // Listed (the usual case) or not (on a removed post): the author's count moves only
        // for a listed one. Guessed, and the guess is a condition; a wrong guess (or a relisting
        // racing the delete) is cancelled with the comment as it is, and tried the other way.
        let mut listed = true;
        for _ in 0..3 {
            let listing = if listed {
                "attribute_exists(#user_pk)"
            } else {
                "attribute_not_exists(#user_pk)"
            };
            let delete = built(
                Delete::builder()
                    .table_name(&self.name)
                    .set_key(Some(key(keys::post_pk(post_id), keys::comment_sk(comment_id))))
                    .condition_expression(format!("{OWN_LIVE} AND {listing}"))
                    .expression_attribute_names("#user_pk", keys::USER_PK)
                    .expression_attribute_values(":caller", s(caller))
                    .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                    .build(),
            )?;
            let mut actions = vec![
                self.bump_post_if(post_id, "comment_count", -1, "attribute_exists(pk)")?,
                TransactWriteItem::builder().delete(delete).build(),
            ];
            if listed {
                actions.push(self.count_listing(caller, Listed::Comments, -1)?);
            }
            match self.transact(actions).await? {
                Ok(()) => return Ok(()),
                Err(c) => match c.item(1).filter(|_| c.failed(1) && !c.failed(0)) {
                    Some(seen)
                        if get_s(seen, "user_id").as_deref() == Some(caller)
                            && !seen.contains_key(keys::REMOVED_ATTR)
                            && seen.contains_key(keys::USER_PK) != listed =>
                    {
                        listed = !listed;
                    }
                    _ => return Err(comment_write_failure(&c)),
                },
            }
        }
        Err(StoreError::Unavailable(
            "the comment was relisted while it was deleted; try again".into(),
        ))
    }

    /// Takes a post's comments off their authors' pages (the user index) while a moderator has
    /// removed the post, or puts them back once it is restored (all but those removed on their
    /// own): a removed post's comments are no more listed or counted than the post. The stream
    /// runs it for each removal and restore of the post in the order they were made (records
    /// of one item keep their order), so the last one's state stands. Answers how many
    /// comments it changed.
    pub async fn list_post_comments(&self, post_id: &str, listed: bool) -> Result<usize, StoreError> {
        let query = self
            .query_prefix(keys::post_pk(post_id), keys::COMMENT_PREFIX)
            // Consistent: a removal's updates just made must be seen by the restore after it,
            // or the restore would skip every comment it should put back.
            .consistent_read(true)
            .projection_expression("sk, user_id, #removed, #user_pk")
            .expression_attribute_names("#removed", keys::REMOVED_ATTR)
            .expression_attribute_names("#user_pk", keys::USER_PK);
        let comments = self.query_every(query).await?;
        let mut changes = Vec::new();
        for item in &comments {
            let (Some(sk), Some(author)) = (get_s(item, keys::SK), get_s(item, "user_id")) else {
                continue;
            };
            let is_listed = item.contains_key(keys::USER_PK);
            let update = Update::builder()
                .table_name(&self.name)
                .set_key(Some(key(keys::post_pk(post_id), &sk)))
                .expression_attribute_names("#user_pk", keys::USER_PK)
                .expression_attribute_names("#user_sk", keys::USER_SK);
            // Each on the condition that it still is what the Query saw (a comment deleted or
            // removed since is left as it is), with its author's count in the same transaction.
            let (update, delta) = if listed {
                if is_listed || item.contains_key(keys::REMOVED_ATTR) {
                    continue;
                }
                let update = update
                    .update_expression("SET #user_pk = :user, #user_sk = :sk")
                    .condition_expression(
                        "attribute_exists(pk) AND attribute_not_exists(#removed) AND attribute_not_exists(#user_pk)",
                    )
                    .expression_attribute_names("#removed", keys::REMOVED_ATTR)
                    .expression_attribute_values(":user", s(keys::user_pk(&author)))
                    .expression_attribute_values(":sk", s(&sk));
                (update, 1)
            } else {
                if !is_listed {
                    continue;
                }
                let update = update
                    .update_expression("REMOVE #user_pk, #user_sk")
                    .condition_expression("attribute_exists(#user_pk)");
                (update, -1)
            };
            changes.push(CountedWrite {
                author,
                action: TransactWriteItem::builder().update(built(update.build())?).build(),
                delta,
            });
        }
        self.transact_counted(Listed::Comments, changes).await
    }

    /// One page of a post's comments, oldest first; those a moderator removed are left out
    /// unless `with_removed` (a moderator's view, where they come marked).
    pub async fn comments_page(
        &self,
        post_id: &str,
        position: Option<&PageCursor>,
        limit: usize,
        with_removed: bool,
    ) -> Result<Page<Comment>, StoreError> {
        let spec = ListSpec {
            scope: comments_scope(post_id),
            index: None,
            pk_attr: keys::PK,
            pk: keys::post_pk(post_id),
            sk_attr: keys::SK,
            sk_prefix: keys::COMMENT_PREFIX,
            order: Order::OldestFirst,
            hide_removed: !with_removed,
        };
        self.page(&spec, position, limit, comment_from_item).await
    }

    /// One page of a user's comments, newest first (the user index: a removed comment has no
    /// keys there), read in one BatchGetItem after the Query.
    pub async fn user_comments_page(
        &self,
        author: &str,
        position: Option<&PageCursor>,
        limit: usize,
    ) -> Result<Page<Comment>, StoreError> {
        let spec = ListSpec {
            scope: user_comments_scope(author),
            index: Some(keys::USER_INDEX),
            pk_attr: keys::USER_PK,
            pk: keys::user_pk(author),
            sk_attr: keys::USER_SK,
            sk_prefix: keys::COMMENT_PREFIX,
            order: Order::NewestFirst,
            hide_removed: false,
        };
        let refs = self.page(&spec, position, limit, comment_ref).await?;
        let wanted = refs
            .items
            .iter()
            .map(|r| key(r.post_pk.clone(), keys::comment_sk(&r.comment_id)))
            .collect();
        let mut found = std::collections::HashMap::new();
        for item in self.batch_get(wanted).await? {
            let comment = comment_from_item(&item)?;
            found.insert(comment.id.clone(), comment);
        }
        // In the page's order; one deleted or removed since the Query is left out.
        let items = refs
            .items
            .into_iter()
            .filter_map(|r| found.remove(&r.comment_id))
            .filter(|c| c.removed.is_none())
            .collect();
        Ok(Page {
            items,
            next: refs.next,
            previous: refs.previous,
        })
    }
}

/// A user index entry of a comment: its post's partition and its id.
struct CommentRef {
    post_pk: String,
    comment_id: String,
}

impl HasSortId for CommentRef {
    fn sort_id(&self) -> &str {
        &self.comment_id
    }
}

fn comment_ref(item: &super::Item) -> Result<CommentRef, StoreError> {
    let post_pk = get_s(item, keys::PK);
    let comment_id =
        get_s(item, keys::USER_SK).and_then(|sk| sk.strip_prefix(keys::COMMENT_PREFIX).map(str::to_string));
    match (post_pk, comment_id) {
        (Some(post_pk), Some(comment_id)) => Ok(CommentRef { post_pk, comment_id }),
        _ => Err(StoreError::Internal(
            "a user index entry without its comment's keys".into(),
        )),
    }
}
