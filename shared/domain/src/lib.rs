//! The forum's domain: what a post, a comment, a like and a live message are, the rules text
//! must pass, and signed cursors. Pure: no AWS SDK, no HTTP, no I/O; each refusal is an error
//! type of its own, which the API crate maps to HTTP.

pub mod cursor;
pub mod limits;
pub mod messages;
pub mod model;
pub mod moderation;
pub mod notifications;
pub mod profanity;
pub mod reports;
pub mod validate;
