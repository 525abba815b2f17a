//! Key names and builders: nothing outside this module spells a key. The items and their
//! keys are listed in docs/table.md.

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const POST_SK: &str = "POST";
pub const PROFILE_SK: &str = "PROFILE";
/// The global feed: one GSI partition, newest first by post id.
pub const FEED_INDEX: &str = "gsi1";
pub const FEED_PK: &str = "gsi1pk";
pub const FEED_SK: &str = "gsi1sk";
pub const FEED_PARTITION: &str = "FEED";
/// Items by user (their posts, their likes).
pub const USER_INDEX: &str = "gsi2";
pub const USER_PK: &str = "gsi2pk";
pub const USER_SK: &str = "gsi2sk";

/// What a post's partition key (and its sort key in the indexes) starts with.
pub const POST_PREFIX: &str = "POST#";
pub fn post_pk(post_id: &str) -> String {
    format!("{POST_PREFIX}{post_id}")
}
/// The post id of a `POST#<pid>` key (a post's or its likes' partition, a feed entry).
pub fn post_id_in(key: &str) -> Option<String> {
    key.strip_prefix(POST_PREFIX).map(str::to_string)
}
pub fn user_pk(user_id: &str) -> String {
    format!("USER#{user_id}")
}
pub fn like_sk(user_id: &str) -> String {
    format!("LIKE#{user_id}")
}
/// Sort key of a post within the feed and user indexes.
pub fn post_ref(post_id: &str) -> String {
    format!("{POST_PREFIX}{post_id}")
}
pub const COMMENT_PREFIX: &str = "COMMENT#";
pub fn comment_sk(comment_id: &str) -> String {
    format!("{COMMENT_PREFIX}{comment_id}")
}
/// Sort key of a like within the user index ("posts this user likes").
pub fn like_ref(post_id: &str) -> String {
    format!("LIKE#{post_id}")
}
pub fn media_pk(media_id: &str) -> String {
    format!("MEDIA#{media_id}")
}
pub const MEDIA_SK: &str = "MEDIA";
pub fn conn_pk(connection_id: &str) -> String {
    format!("CONN#{connection_id}")
}
pub const CONN_SK: &str = "CONN";
/// A user's connection slots (`USER#<uid>` / `CONNSLOT#<n>`): the per-user cap.
pub fn conn_slot_sk(slot: u32) -> String {
    format!("CONNSLOT#{slot:02}")
}
pub fn sub_pk(post_id: &str) -> String {
    format!("SUB#{post_id}")
}
/// Every connection is in one gsi1 partition (the feed's audience).
pub const CONNECTIONS_PARTITION: &str = "CONNS";
pub fn rate_pk(user_id: &str, action: &str) -> String {
    format!("RATE#{user_id}#{action}")
}
/// A display name's claim (`NAME#<username_key>` / `NAME`): which account it belongs to.
pub fn name_pk(username_key: &str) -> String {
    format!("NAME#{username_key}")
}
pub const NAME_SK: &str = "NAME";
/// The moderation log: one partition (moderators act rarely), newest first by action id.
pub const MODLOG_PARTITION: &str = "MODLOG";
pub const LOG_PREFIX: &str = "ACTION#";
pub fn log_sk(action_id: &str) -> String {
    format!("{LOG_PREFIX}{action_id}")
}
/// A user's suspension, while one is in force (`USER#<uid>` / `SUSPENSION`).
pub const SUSPENSION_SK: &str = "SUSPENSION";
/// The attribute a removed post or comment carries (and conditions test).
pub const REMOVED_ATTR: &str = "removed";
/// Reports of one target (`REPORT#POST#<pid>` or `REPORT#COMMENT#<pid>#<cid>`): one item per
/// reporter (`BY#<uid>`) and the target's queue entry (`SUMMARY`).
pub fn report_pk(target: &forum_domain::reports::ReportTarget) -> String {
    use forum_domain::reports::ReportTarget;
    match target {
        ReportTarget::Post { post_id } => format!("REPORT#POST#{post_id}"),
        ReportTarget::Comment { post_id, comment_id } => format!("REPORT#COMMENT#{post_id}#{comment_id}"),
    }
}
/// The target a report partition key names.
pub fn target_of_report_pk(pk: &str) -> Option<forum_domain::reports::ReportTarget> {
    use forum_domain::reports::ReportTarget;
    if let Some(post_id) = pk.strip_prefix("REPORT#POST#") {
        return Some(ReportTarget::Post {
            post_id: post_id.to_string(),
        });
    }
    let (post_id, comment_id) = pk.strip_prefix("REPORT#COMMENT#")?.split_once('#')?;
    Some(ReportTarget::Comment {
        post_id: post_id.to_string(),
        comment_id: comment_id.to_string(),
    })
}
pub fn report_by_sk(user_id: &str) -> String {
    format!("BY#{user_id}")
}
pub const REPORT_SUMMARY_SK: &str = "SUMMARY";
/// The report queue: every summary in one gsi1 partition.
pub const REPORTS_PARTITION: &str = "REPORTS";
pub const QUEUE_PREFIX: &str = "R#";
/// A summary's place in the queue: open ones (`R#0#`) before resolved ones (`R#1#`), each by
/// the id of the report that opened it or the action that resolved it.
pub fn queue_sk(resolved: bool, id: &str) -> String {
    format!("{QUEUE_PREFIX}{}#{id}", u8::from(resolved))
}
/// Whom a user blocks: one item per block (`USER#<uid>` / `BLOCK#<blocked>`) and the set of
/// every blocked id (`USER#<uid>` / `BLOCKS`).
pub const BLOCK_PREFIX: &str = "BLOCK#";
pub fn block_sk(blocked: &str) -> String {
    format!("{BLOCK_PREFIX}{blocked}")
}
pub const BLOCKS_SK: &str = "BLOCKS";
/// How many posts and comments a user has listed (`USER#<uid>` / `ACTIVITY`: `posts`, `comments`).
pub const ACTIVITY_SK: &str = "ACTIVITY";
/// Who blocks a user, for live events: one item per blocker in the blocked user's partition
/// (`USER#<uid>` / `BLOCKER#<blocker>`), so a user any number of people block can always be
/// blocked once more (a set on one item stopped at DynamoDB's 400 KB item limit).
pub const BLOCKER_PREFIX: &str = "BLOCKER#";
pub fn blocker_sk(blocker: &str) -> String {
    format!("{BLOCKER_PREFIX}{blocker}")
}
/// A create's `Idempotency-Key` (`USER#<uid>` / `IDEM#<sha256 of the key>`).
pub fn idempotency_sk(key_hash: &str) -> String {
    format!("IDEM#{key_hash}")
}
/// A user's notifications (`USER#<uid>` / `NOTIF#<id>`, the id minted when it was written),
/// newest first by id, and what they have read (`USER#<uid>` / `INBOX`: `read_up_to`).
pub const NOTIFICATION_PREFIX: &str = "NOTIF#";
pub fn notification_sk(id: &str) -> String {
    format!("{NOTIFICATION_PREFIX}{id}")
}
/// Above every notification's sort key (ids are ULIDs, whose characters all sort below `~`)
/// and below the other items of a user's partition that sort after them (`NOTIFIED#`,
/// `PROFILE`, `SUSPENSION`): the end of a range of notifications.
pub const NOTIFICATIONS_END: &str = "NOTIF#~";
/// The sort key just after notification `id`'s, before any later one's.
pub fn notification_after_sk(id: &str) -> String {
    format!("{NOTIFICATION_PREFIX}{id}~")
}
/// Which notification a source (a post or comment) gave its recipient: written once, so a
/// redelivered record finds it and writes no second notification.
pub fn notification_source_sk(source_id: &str) -> String {
    format!("NOTIFIED#{source_id}")
}
pub const INBOX_SK: &str = "INBOX";
/// Which posts of one window of time a user likes (`USER#<uid>` / `LIKED#<window>`): the
/// window is a post id's first 5 ULID characters (its top 23 bits of milliseconds, about 9.3
/// hours), so a feed page's posts share one or two. `None` for an id that is not a ULID.
pub const LIKED_PREFIX: &str = "LIKED#";
pub const LIKED_WINDOW_CHARS: usize = 5;
pub fn liked_window_sk(post_id: &str) -> Option<String> {
    (post_id.len() == 26 && post_id.is_ascii()).then(|| format!("{LIKED_PREFIX}{}", &post_id[..LIKED_WINDOW_CHARS]))
}

/// A post's like notification group in its author's partition (`USER#<uid>` / `LIKES#<pid>`).
pub fn like_group_sk(post_id: &str) -> String {
    format!("LIKES#{post_id}")
}
