//! What tests, benchmarks and forum-local use and no deployed function may: minted tokens,
//! test keys, test images (hostile ones too) and the profanity filter's corpora.

pub mod images;
pub mod keys;
pub mod profanity_corpus;
pub mod tokens;

pub use tokens::{MintRoles, TokenMint, issue_token, issue_token_with, local_user_id};
