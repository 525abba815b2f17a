//! End-to-end tests: real HTTP against forum-local, which runs the Lambda handlers against
//! Amazon DynamoDB Local started by `support`. One test binary; one module per concern.

mod auth;
mod blocks;
mod browser;
mod budgets;
mod comments;
mod consistency;
mod deploy;
mod events;
mod hostile;
mod hot_reads;
mod idempotency;
mod likes;
mod limits;
mod media;
mod moderation;
mod notifications;
mod pagination;
mod posts;
mod realtime;
mod resilience;
mod support;
mod users;
mod validation;
mod web;
