//! Hot reads: the newest feed pages and popular posts are what every viewer reads, and the
//! ones DynamoDB scales least (one feed partition, one item per post; docs/table.md). Their
//! user-agnostic part (content, author, counters) is served from this container's memory for
//! `Config::read_cache_ttl`, loaded by one request at a time per page or post; the caller's
//! own `is_liked` is still read on every request.
//!
//! The staleness bound: a list or a post read may show a post, an edit, a deletion or a count
//! up to the TTL late (WebSocket events carry committed values at once; writes never read
//! the cache). A container forgets what its own writes changed.

use std::collections::HashSet;

use super::App;
use crate::cache::SingleFlight;
use crate::cursor::PageCursor;
use crate::error::ApiError;
use crate::model::{Post, Profile};
use crate::store::Page;

/// Feed pages kept per container (the newest ones are the hot ones; a deep page read by a
/// crawler must not push them out for long).
const FEED_PAGES: usize = 256;
const POSTS: usize = 10_000;

pub(super) struct HotReads {
    feed_pages: SingleFlight<(Option<PageCursor>, usize), Page<Post>>,
    posts: SingleFlight<String, Post>,
}

impl HotReads {
    pub(super) fn new(ttl: std::time::Duration) -> Self {
        HotReads {
            feed_pages: SingleFlight::new(ttl, FEED_PAGES),
            posts: SingleFlight::new(ttl, POSTS),
        }
    }
}

impl App {
    /// A feed page as stored (no caller in it): one Query per page and TTL at most.
    pub(super) async fn feed_page(&self, position: Option<&PageCursor>, limit: usize) -> Result<Page<Post>, ApiError> {
        self.hot
            .feed_pages
            .get_or_load((position.cloned(), limit), || async {
                Ok(self.table.feed_page(position, limit).await?)
            })
            .await
    }

    /// A post, its author and whether `viewer` likes it. The post comes from memory while
    /// fresh; whoever loads it reads the like in the same BatchGetItem, everyone else reads
    /// their like (and any uncached profile) in one of their own: one round trip either way.
    pub(super) async fn post_for(&self, post_id: &str, viewer: &str) -> Result<(Post, Profile, bool), ApiError> {
        let mut loaded_like = None;
        let slot = &mut loaded_like;
        let post = self
            .hot
            .posts
            .get_or_load(post_id.to_string(), || async move {
                let (post, liked) = self
                    .table
                    .get_post(post_id, viewer)
                    .await?
                    .ok_or_else(|| ApiError::NotFound("post not found".into()))?;
                *slot = Some(liked);
                Ok::<_, ApiError>(post)
            })
            .await?;
        let authors = HashSet::from([post.user_id.clone()]);
        let (mut profiles, liked) = match loaded_like {
            Some(liked) => (self.profiles(authors).await?, liked),
            None => {
                let (profiles, liked) = self
                    .profiles_and_likes(authors, std::slice::from_ref(&post.id), viewer)
                    .await?;
                (profiles, liked.contains(&post.id))
            }
        };
        let author = profiles
            .remove(&post.user_id)
            .unwrap_or_else(|| Profile::unknown(&post.user_id));
        Ok((post, author, liked))
    }

    /// This container just changed `post_id` (or its counters): its cached copy and every
    /// cached feed page go, so its own next read sees the write.
    pub(super) fn forget_post(&self, post_id: &str) {
        self.hot.posts.forget(&post_id.to_string());
        self.hot.feed_pages.forget_all();
    }
}
