//! Profiles and display names: written with the author's writes, names claimed uniquely.

use super::blocks::{ViewerState, blocked_set};
use super::items::{get_s, key, profile_from_item, profile_item, s};
use super::rate::RateToken;
use super::tx::{Cancelled, Guard, built};
use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

use super::error::StoreError;
use super::keys;
use super::{Item, Table};
use forum_domain::model::Profile;
use forum_domain::model::username_key;

impl Table {
    /// Runs `actions` and, when `author` is given (its claims changed since this container last
    /// wrote them), the author's profile and the claim on the name it is shown under, in the
    /// same transaction. The name the token asks for is tried first, then the account's
    /// [`Profile::fallback_name`]; both held by other accounts is `409 username_taken`.
    /// Answers the cancellation of `actions` (their indices unchanged) or the profile written.
    pub(super) async fn transact_as_author(
        &self,
        actions: Vec<TransactWriteItem>,
        author: Option<&Profile>,
        now: &str,
        rate: &RateToken,
    ) -> Result<Result<Option<Profile>, Cancelled>, StoreError> {
        let Some(author) = author else {
            return Ok(self.transact_as_writer(actions, rate).await?.map(|()| None));
        };
        // The writer's standing check comes right after `actions`, then the profile and name.
        let own = actions.len() + 1;
        for name in [author.token_name.clone(), author.fallback_name()] {
            let shown = Profile {
                username: name,
                ..author.clone()
            };
            let mut all = actions.clone();
            all.push(self.put(profile_item(&shown, now)?, None)?);
            all.push(self.claim_name(&shown, now)?);
            match self
                .transact_as_writer_then(all, actions.len(), rate, Some(&shown))
                .await?
            {
                Ok(()) => return Ok(Ok(Some(shown))),
                // Only the name was refused: try the next one.
                Err(c) if c.failed(own + 1) && (0..own).all(|i| !c.failed(i)) => continue,
                Err(c) => return Ok(Err(c)),
            }
        }
        Err(StoreError::NameTaken(author.token_name.clone()))
    }

    /// Holds a display name for one account: written only if no other account holds a name
    /// with the same key.
    pub(super) fn claim_name(&self, profile: &Profile, now: &str) -> Result<TransactWriteItem, StoreError> {
        let mut item = key(keys::name_pk(&username_key(&profile.username)), keys::NAME_SK);
        item.insert("type".into(), s("name"));
        item.insert("user_id".into(), s(&profile.user_id));
        item.insert("username".into(), s(&profile.username));
        item.insert("claimed_at".into(), s(now));
        let put = built(
            Put::builder()
                .table_name(&self.name)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk) OR user_id = :uid")
                .expression_attribute_values(":uid", s(&profile.user_id))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Frees a name its account no longer shows (after a rename), unless the account shows it
    /// again by now: the stream's clean-up, safe to repeat.
    pub async fn release_name(&self, name_key: &str, user_id: &str) -> Result<bool, StoreError> {
        let name = Guard {
            key: key(keys::name_pk(name_key), keys::NAME_SK),
            condition: "user_id = :uid",
            values: HashMap::from([(":uid".to_string(), s(user_id))]),
        };
        let profile = Guard {
            key: key(keys::user_pk(user_id), keys::PROFILE_SK),
            condition: "attribute_not_exists(pk) OR name_key <> :key",
            values: HashMap::from([(":key".to_string(), s(name_key))]),
        };
        self.delete_unless_used(name, profile).await
    }

    /// The accounts holding the names with these keys (`username_key`), in the keys' order;
    /// names nobody holds are left out. One BatchGetItem of the name claims.
    pub async fn users_named(&self, name_keys: &[String]) -> Result<Vec<String>, StoreError> {
        let wanted = name_keys.iter().map(|k| key(keys::name_pk(k), keys::NAME_SK)).collect();
        let mut holders: HashMap<String, String> = HashMap::new();
        for item in self.batch_get(wanted).await? {
            if let (Some(pk), Some(user_id)) = (get_s(&item, keys::PK), get_s(&item, "user_id")) {
                holders.insert(pk, user_id);
            }
        }
        let mut users: Vec<String> = Vec::new();
        for name_key in name_keys {
            if let Some(user) = holders.remove(&keys::name_pk(name_key))
                && !users.contains(&user)
            {
                users.push(user);
            }
        }
        Ok(users)
    }

    /// Profiles of `user_ids` and which of `post_ids` `viewer` likes, in one BatchGetItem
    /// (split into concurrent calls past 100 keys).
    pub async fn profiles_and_likes(
        &self,
        user_ids: &HashSet<String>,
        post_ids: &[String],
        viewer: &str,
        with_blocks: bool,
    ) -> Result<(HashMap<String, Profile>, ViewerState), StoreError> {
        let mut wanted: Vec<Item> = user_ids
            .iter()
            .map(|uid| key(keys::user_pk(uid), keys::PROFILE_SK))
            .collect();
        wanted.extend(super::likes::liked_keys(viewer, post_ids));
        // Whom the viewer blocks (for a list) rides along with their likes: no round trip of
        // its own.
        if with_blocks {
            wanted.push(key(keys::user_pk(viewer), keys::BLOCKS_SK));
        }
        let mut profiles = HashMap::new();
        let mut state = ViewerState::default();
        let asked: HashSet<&str> = post_ids.iter().map(String::as_str).collect();
        let mut liked = super::likes::LikedRead::default();
        for item in self.batch_get(wanted).await? {
            if liked.take(&item, &asked) {
                continue;
            }
            match get_s(&item, keys::SK).as_deref() {
                Some(keys::PROFILE_SK) => {
                    let profile = profile_from_item(&item)?;
                    profiles.insert(profile.user_id.clone(), profile);
                }
                Some(keys::BLOCKS_SK) => state.blocked = blocked_set(&item),
                _ => {}
            }
        }
        state.liked = self.liked_among(liked, viewer, post_ids).await?;
        Ok((profiles, state))
    }
}
