//! Transactions and batches: retries on conflicts and throttling, and what a cancelled
//! transaction says about each of its actions.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, KeysAndAttributes, Put, TransactWriteItem};

use super::error::StoreError;
use super::{Item, Table, backoff};

/// Attempts for a BatchGetItem whose keys come back unprocessed (throttling).
pub(super) const BATCH_ATTEMPTS: u32 = 5;

/// BatchGetItem takes at most this many keys per call.
pub(super) const BATCH_MAX_KEYS: usize = 100;

/// Why a transaction was cancelled, per action in the order given.
#[derive(Debug, Default)]
pub(super) struct Cancelled {
    pub(super) codes: Vec<String>,
    pub(super) items: Vec<Option<Item>>,
}

impl Cancelled {
    pub(super) fn failed(&self, index: usize) -> bool {
        self.codes.get(index).is_some_and(|c| c == "ConditionalCheckFailed")
    }

    /// The item an action's failed condition saw (needs `ReturnValuesOnConditionCheckFailure`).
    pub(super) fn item(&self, index: usize) -> Option<&Item> {
        self.items.get(index).and_then(Option::as_ref)
    }
}

/// Attempts for a transaction that keeps meeting conflicting concurrent transactions.
pub(super) const TRANSACTION_ATTEMPTS: u32 = 10;

/// The deadline of the request (or record) leaves no time to retry `what`.
fn out_of_time(what: &str) -> StoreError {
    StoreError::Unavailable(format!("no time left before the deadline to retry {what}"))
}

pub(super) fn built<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, StoreError> {
    result.map_err(|e| StoreError::Internal(format!("building a request: {e}")))
}

impl Table {
    /// Runs a transaction, retrying (bounded, jittered) while it only meets conflicting
    /// concurrent transactions. `Ok(Err(_))` says which conditions failed.
    pub(super) async fn transact(&self, actions: Vec<TransactWriteItem>) -> Result<Result<(), Cancelled>, StoreError> {
        for attempt in 0..TRANSACTION_ATTEMPTS {
            if attempt > 0 && !crate::deadline::pause_before_retry(backoff(attempt)).await {
                return Err(out_of_time("a transaction meeting concurrent writes"));
            }
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(Ok(())),
                Err(err) => err,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) = err.as_service_error() else {
                return Err(err.into());
            };
            let reasons = cancel.cancellation_reasons();
            let cancelled = Cancelled {
                codes: reasons.iter().map(|r| r.code().unwrap_or("None").to_string()).collect(),
                items: reasons.iter().map(|r| r.item().cloned()).collect(),
            };
            if cancelled.codes.iter().any(|c| c == "ConditionalCheckFailed") {
                return Ok(Err(cancelled));
            }
            let retryable = cancelled.codes.iter().all(|c| {
                matches!(
                    c.as_str(),
                    "None" | "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
                )
            });
            if !retryable {
                return Err(StoreError::Internal(format!(
                    "transaction cancelled: {:?}",
                    cancelled.codes
                )));
            }
        }
        Err(StoreError::Unavailable(
            "transaction kept conflicting with concurrent writes".into(),
        ))
    }

    pub(super) fn put(&self, item: Item, condition: Option<&str>) -> Result<TransactWriteItem, StoreError> {
        let put = built(
            Put::builder()
                .table_name(&self.name)
                .set_item(Some(item))
                .set_condition_expression(condition.map(str::to_string))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    pub(super) async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError> {
        let requests = items
            .into_iter()
            .map(|item| {
                built(
                    aws_sdk_dynamodb::types::PutRequest::builder()
                        .set_item(Some(item))
                        .build(),
                )
                .map(|p| aws_sdk_dynamodb::types::WriteRequest::builder().put_request(p).build())
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write(requests).await
    }

    pub(super) async fn batch_delete(&self, keys: Vec<Item>) -> Result<(), StoreError> {
        let requests = keys
            .into_iter()
            .map(|k| {
                built(
                    aws_sdk_dynamodb::types::DeleteRequest::builder()
                        .set_key(Some(k))
                        .build(),
                )
                .map(|d| {
                    aws_sdk_dynamodb::types::WriteRequest::builder()
                        .delete_request(d)
                        .build()
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write(requests).await
    }

    /// BatchWriteItem in chunks of 25, retrying unprocessed items with backoff.
    pub(super) async fn batch_write(
        &self,
        requests: Vec<aws_sdk_dynamodb::types::WriteRequest>,
    ) -> Result<(), StoreError> {
        for chunk in requests.chunks(25) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                if attempt > 0 && !crate::deadline::pause_before_retry(backoff(attempt)).await {
                    return Err(out_of_time("writes DynamoDB left unprocessed"));
                }
                if attempt >= BATCH_ATTEMPTS {
                    return Err(StoreError::Unavailable(
                        "DynamoDB left writes unprocessed after retries".into(),
                    ));
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.name, pending)
                    .send()
                    .await?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.name))
                    .unwrap_or_default();
                attempt += 1;
            }
        }
        Ok(())
    }

    /// One item by key (GetItem), optionally strongly consistent and limited to `projection`.
    pub(super) async fn get_one(
        &self,
        key: Item,
        consistent: bool,
        projection: Option<&str>,
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key))
            .consistent_read(consistent)
            .set_projection_expression(projection.map(str::to_string))
            .send()
            .await?;
        Ok(out.item)
    }

    /// A Query of the table's items in partition `pk` whose sort key starts with `prefix`;
    /// the caller adds what it reads, in what order and how many.
    pub(super) fn query_prefix(
        &self,
        pk: String,
        prefix: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", AttributeValue::S(pk))
            .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_string()))
    }

    /// Every item a Query matches, following `LastEvaluatedKey` through all pages.
    pub(super) async fn query_every(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = query.clone().set_exclusive_start_key(start).send().await?;
            start = out.last_evaluated_key().cloned();
            items.extend(out.items.unwrap_or_default());
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// How many items a Query matches (after its filter), following `LastEvaluatedKey`
    /// through all pages: `Select COUNT`, so no item is returned.
    pub(super) async fn count_every(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<u64, StoreError> {
        let query = query.select(aws_sdk_dynamodb::types::Select::Count);
        let mut count = 0u64;
        let mut start = None;
        loop {
            let out = query.clone().set_exclusive_start_key(start).send().await?;
            count += u64::try_from(out.count()).unwrap_or(0);
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(count);
            }
        }
    }

    /// BatchGetItem over any number of keys: chunks of 100 run concurrently, unprocessed keys
    /// are retried with backoff. Missing items are simply absent from the result.
    pub(super) async fn batch_get(&self, wanted: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        self.batch_get_with(wanted, false).await
    }

    /// As [`Table::batch_get`], strongly consistent (a deleted item is gone at once).
    pub(super) async fn batch_get_consistent(&self, wanted: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        self.batch_get_with(wanted, true).await
    }

    async fn batch_get_with(&self, wanted: Vec<Item>, consistent: bool) -> Result<Vec<Item>, StoreError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let chunks: Vec<Vec<Item>> = wanted.chunks(BATCH_MAX_KEYS).map(<[Item]>::to_vec).collect();
        let calls = chunks.into_iter().map(|chunk| self.batch_get_chunk(chunk, consistent));
        let results = futures::future::try_join_all(calls).await?;
        Ok(results.into_iter().flatten().collect())
    }

    pub(super) async fn batch_get_chunk(
        &self,
        mut pending: Vec<Item>,
        consistent: bool,
    ) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        for attempt in 0..BATCH_ATTEMPTS {
            if attempt > 0 && !crate::deadline::pause_before_retry(backoff(attempt)).await {
                return Err(out_of_time("keys DynamoDB left unprocessed"));
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .consistent_read(consistent)
                .build()
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.name, request)
                .send()
                .await?;
            if let Some(mut responses) = out.responses {
                found.extend(responses.remove(&self.name).unwrap_or_default());
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.name))
                .map(|k| k.keys)
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(found);
            }
        }
        Err(StoreError::Unavailable(
            "DynamoDB left keys unprocessed after retries".into(),
        ))
    }

    /// Deletes `target` (on its condition) in one transaction with a condition on `check`:
    /// `false` when either fails. The stream's clean-ups use it so that a late record never
    /// removes what is in use again (a released upload its post shows, a freed name its
    /// account took back).
    pub(super) async fn delete_unless_used(&self, target: Guard<'_>, check: Guard<'_>) -> Result<bool, StoreError> {
        let delete = built(
            Delete::builder()
                .table_name(&self.name)
                .set_key(Some(target.key))
                .condition_expression(target.condition)
                .set_expression_attribute_values(Some(target.values))
                .build(),
        )?;
        let check = built(
            ConditionCheck::builder()
                .table_name(&self.name)
                .set_key(Some(check.key))
                .condition_expression(check.condition)
                .set_expression_attribute_values(Some(check.values))
                .build(),
        )?;
        let actions = vec![
            TransactWriteItem::builder().delete(delete).build(),
            TransactWriteItem::builder().condition_check(check).build(),
        ];
        Ok(self.transact(actions).await?.is_ok())
    }
}

/// An item, and a condition on it with its values.
pub(super) struct Guard<'a> {
    pub(super) key: Item,
    pub(super) condition: &'a str,
    pub(super) values: HashMap<String, AttributeValue>,
}

/// The errors of single conditional writes, which say whether the condition failed.
pub(super) trait ConditionalWriteError {
    fn condition_failed(&self) -> bool;
}

impl ConditionalWriteError for UpdateItemError {
    fn condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

impl ConditionalWriteError for DeleteItemError {
    fn condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

/// A conditional write's outcome: `true` when it applied, `false` when its condition failed
/// (the state it guards against); other failures are errors.
pub(super) fn applied<O, E, R>(result: Result<O, SdkError<E, R>>) -> Result<bool, StoreError>
where
    E: ConditionalWriteError,
    SdkError<E, R>: Into<StoreError>,
{
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(ConditionalWriteError::condition_failed) =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}
