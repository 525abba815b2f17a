//! Hot reads: the newest feed pages and popular posts are what every viewer reads, and the
//! ones DynamoDB scales least (one feed partition, one item per post; docs/table.md). Their
//! user-agnostic part (content, author, counters) is served from this container's memory for
//! `Config::read_cache_ttl`, loaded by one request at a time per page or post; the caller's
//! own `is_liked` is still read on every request.
//!
//! The staleness bound: a list or a post read may show a post, an edit, a deletion or a count
//! up to the TTL late (WebSocket events carry committed values at once; writes never read
//! the cache). A container forgets what its own writes changed (which matters where one
//! container serves both, as forum-local's unrestricted `Stack::app` does).

use std::collections::HashSet;

use super::App;
use crate::cache::{Limits, SingleFlight, TtlCache};
use crate::error::ApiError;
use forum_domain::cursor::PageCursor;
use forum_domain::model::{Post, Profile};
use forum_store::{Page, ViewerState};

/// What a container keeps. Bytes bound it whatever is asked for: a 100-post page of
/// 5,000-character posts is up to 2 MB (four-byte characters), and a container has 256 MB.
const FEED_PAGES: Limits<Page<Post>> = Limits {
    entries: 256,
    bytes: 16 << 20,
    weigh: |page| page.items.iter().map(post_bytes).sum::<usize>() + 256,
};
const POSTS: Limits<Option<Post>> = Limits {
    entries: 10_000,
    bytes: 16 << 20,
    weigh: |post| post.as_ref().map_or(std::mem::size_of::<Option<Post>>(), post_bytes),
};

/// The heap a post holds, and its struct.
fn post_bytes(post: &Post) -> usize {
    std::mem::size_of::<Post>()
        + post.id.capacity()
        + post.user_id.capacity()
        + post.content.capacity()
        + post.media_url.as_ref().map_or(0, String::capacity)
        + post.created_at.capacity()
        + post.edited_at.as_ref().map_or(0, String::capacity)
}

pub(super) struct HotReads {
    feed_pages: SingleFlight<(Option<PageCursor>, usize), Page<Post>>,
    /// `None`: no such post (deleted, most likely), kept like a post so a deleted viral post
    /// is not read on every view either.
    posts: SingleFlight<String, Option<Post>>,
    /// Posts' authors, which never change: kept long, whatever the read cache's TTL.
    authors: TtlCache<String, String>,
}

impl HotReads {
    pub(super) fn new(ttl: std::time::Duration) -> Self {
        HotReads {
            feed_pages: SingleFlight::new(ttl, FEED_PAGES),
            posts: SingleFlight::new(ttl, POSTS),
            authors: TtlCache::new(std::time::Duration::from_secs(3600), 10_000),
        }
    }
}

impl App {
    /// A feed page as stored (no caller in it): one load per page per TTL. Whoever loads it
    /// read their own likes in the same BatchGetItem (answered here); everyone else reads
    /// theirs with the profiles.
    pub(super) async fn feed_page(
        &self,
        position: Option<&PageCursor>,
        limit: usize,
        viewer: &str,
    ) -> Result<(Page<Post>, Option<ViewerState>), ApiError> {
        let mut loaded_likes = None;
        let slot = &mut loaded_likes;
        let page = self
            .hot
            .feed_pages
            .get_or_load((position.cloned(), limit), || async move {
                let (page, liked) = self.table.feed_page(position, limit, viewer).await?;
                *slot = Some(liked);
                Ok::<_, ApiError>(page)
            })
            .await?;
        Ok((page, loaded_likes))
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
                let found = self.table.get_post(post_id, viewer).await?;
                *slot = found.as_ref().map(|(_, liked)| *liked);
                Ok::<_, ApiError>(found.map(|(post, _)| post))
            })
            .await?
            .ok_or_else(|| ApiError::NotFound("post not found".into()))?;
        let authors = HashSet::from([post.user_id.clone()]);
        let (mut profiles, liked) = match loaded_like {
            Some(liked) => (self.profiles(authors).await?, liked),
            None => {
                let (profiles, liked) = self
                    .profiles_and_likes(authors, std::slice::from_ref(&post.id), viewer, false)
                    .await?;
                (profiles, liked.liked.contains(&post.id))
            }
        };
        let author = profiles
            .remove(&post.user_id)
            .unwrap_or_else(|| Profile::unknown(&post.user_id));
        Ok((post, author, liked))
    }

    /// Who wrote a post: from this container's memory once known (a post's author never
    /// changes), else one read. A missing or removed post is 404.
    pub(super) async fn post_author(&self, post_id: &str) -> Result<String, ApiError> {
        if let Some(known) = self.hot.authors.get(&post_id.to_string()) {
            return Ok(known);
        }
        let author = self
            .table
            .post_author(post_id)
            .await?
            .ok_or_else(|| ApiError::NotFound("post not found".into()))?;
        self.hot.authors.insert(post_id.to_string(), author.clone());
        Ok(author)
    }

    /// What the read cache holds now, (entries, bytes) for feed pages and for posts, and its
    /// byte budget for each.
    pub fn read_cache_held(&self) -> ((usize, usize), (usize, usize), usize) {
        (self.hot.feed_pages.held(), self.hot.posts.held(), FEED_PAGES.bytes)
    }

    /// This container just changed `post_id` (or its counters): its cached copy and every
    /// cached feed page go, so its own next read sees the write.
    pub(super) fn forget_post(&self, post_id: &str) {
        self.hot.posts.forget(&post_id.to_string());
        self.hot.feed_pages.forget_all();
    }
}
