//! What this container asks of DynamoDB, counted by an SDK interceptor on the client: round
//! trips (HTTP requests sent, retries included), calls per operation, and the capacity units
//! DynamoDB reports it consumed (every request asks for `ReturnConsumedCapacity=TOTAL`).
//! The budgets, the benchmarks and the metrics read it.
//!
//! DynamoDB Local reports capacity by its own accounting, which charges nothing for a key that
//! is absent or a query that finds nothing; AWS charges the minimum for both: half a read unit
//! per key (one when consistent, two in a transaction), one write unit per item written (two
//! in a transaction). So each call counts the larger of what was reported and that minimum
//! (less the keys DynamoDB left unprocessed), and a write refused by its condition counts its
//! minimum too, as AWS charges it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::operation as op;
use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextMut,
    BeforeTransmitInterceptorContextRef, Error, Input, Output,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

#[derive(Clone, Debug, Default)]
pub struct DynamoDbUsage(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    round_trips: AtomicU64,
    /// Capacity units in thousandths, so they add up atomically.
    read_milliunits: AtomicU64,
    write_milliunits: AtomicU64,
    calls: Mutex<BTreeMap<String, u64>>,
}

/// A moment's totals; two of them subtract to what happened in between.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UsageSnapshot {
    pub round_trips: u64,
    pub read_units: f64,
    pub write_units: f64,
    /// Round trips per operation (`Query`, `BatchGetItem`, ...).
    pub calls: BTreeMap<String, u64>,
}

impl UsageSnapshot {
    pub fn since(&self, earlier: &UsageSnapshot) -> UsageSnapshot {
        UsageSnapshot {
            round_trips: self.round_trips - earlier.round_trips,
            read_units: self.read_units - earlier.read_units,
            write_units: self.write_units - earlier.write_units,
            calls: self
                .calls
                .iter()
                .map(|(name, n)| (name.clone(), n - earlier.calls.get(name).copied().unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }

    pub fn add(&mut self, other: &UsageSnapshot) {
        self.round_trips += other.round_trips;
        self.read_units += other.read_units;
        self.write_units += other.write_units;
        for (name, n) in &other.calls {
            *self.calls.entry(name.clone()).or_default() += n;
        }
    }

    pub fn calls_of(&self, operation: &str) -> u64 {
        self.calls.get(operation).copied().unwrap_or(0)
    }
}

impl DynamoDbUsage {
    pub fn round_trips(&self) -> u64 {
        self.0.round_trips.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> UsageSnapshot {
        UsageSnapshot {
            round_trips: self.round_trips(),
            read_units: self.0.read_milliunits.load(Ordering::Relaxed) as f64 / 1000.0,
            write_units: self.0.write_milliunits.load(Ordering::Relaxed) as f64 / 1000.0,
            calls: self.0.calls.lock().map(|c| c.clone()).unwrap_or_default(),
        }
    }
}

/// The consumed capacity of one answer, whichever shape the operation gives it.
trait Consumed {
    fn units(&self) -> f64;
}

impl Consumed for Option<ConsumedCapacity> {
    fn units(&self) -> f64 {
        self.as_ref().and_then(|c| c.capacity_units).unwrap_or(0.0)
    }
}

impl Consumed for Option<Vec<ConsumedCapacity>> {
    fn units(&self) -> f64 {
        self.iter().flatten().filter_map(|c| c.capacity_units).sum()
    }
}

/// For each operation the forum may call: asks for the total consumed capacity, and reads it
/// back as read or write units.
macro_rules! operations {
    ($( $module:ident :: $input:ident / $output:ident => $kind:ident ),* $(,)?) => {
        /// Asks for the consumed capacity; answers the least AWS would charge for the call.
        fn ask_for_capacity(input: &mut Input) -> Option<MinimumCharge> {
            $(
                if let Some(input) = input.downcast_mut::<op::$module::$input>() {
                    input.return_consumed_capacity.get_or_insert(ReturnConsumedCapacity::Total);
                    return Some(MinimumCharge(Kind::$kind, input.minimum_units()));
                }
            )*
            None
        }

        fn consumed(output: &Output) -> Option<(Kind, f64)> {
            $(
                if let Some(output) = output.downcast_ref::<op::$module::$output>() {
                    return Some((Kind::$kind, output.consumed_capacity.units()));
                }
            )*
            None
        }
    };
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Read,
    Write,
}

/// The least a call is charged, whatever it finds: AWS's minimum per key read or item written.
trait Minimum {
    fn minimum_units(&self) -> f64;
}

fn read_unit(consistent: Option<bool>) -> f64 {
    if consistent == Some(true) { 1.0 } else { 0.5 }
}

impl Minimum for op::get_item::GetItemInput {
    fn minimum_units(&self) -> f64 {
        read_unit(self.consistent_read)
    }
}

impl Minimum for op::batch_get_item::BatchGetItemInput {
    fn minimum_units(&self) -> f64 {
        self.request_items
            .iter()
            .flatten()
            .map(|(_, keys)| keys.keys().len() as f64 * read_unit(keys.consistent_read()))
            .sum()
    }
}

impl Minimum for op::query::QueryInput {
    fn minimum_units(&self) -> f64 {
        read_unit(self.consistent_read)
    }
}

impl Minimum for op::scan::ScanInput {
    fn minimum_units(&self) -> f64 {
        read_unit(self.consistent_read)
    }
}

impl Minimum for op::transact_get_items::TransactGetItemsInput {
    fn minimum_units(&self) -> f64 {
        2.0 * self.transact_items.as_ref().map_or(0, Vec::len) as f64
    }
}

impl Minimum for op::put_item::PutItemInput {
    fn minimum_units(&self) -> f64 {
        1.0
    }
}

impl Minimum for op::update_item::UpdateItemInput {
    fn minimum_units(&self) -> f64 {
        1.0
    }
}

impl Minimum for op::delete_item::DeleteItemInput {
    fn minimum_units(&self) -> f64 {
        1.0
    }
}

impl Minimum for op::batch_write_item::BatchWriteItemInput {
    fn minimum_units(&self) -> f64 {
        self.request_items
            .iter()
            .flatten()
            .map(|(_, writes)| writes.len() as f64)
            .sum()
    }
}

impl Minimum for op::transact_write_items::TransactWriteItemsInput {
    fn minimum_units(&self) -> f64 {
        2.0 * self.transact_items.as_ref().map_or(0, Vec::len) as f64
    }
}

/// Writes AWS charges though they wrote nothing: refused by their condition, or a transaction
/// cancelled by one of its conditions. Throttled, invalid or conflicting requests are free.
fn refused_by_a_condition(error: &Error) -> bool {
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    if let Some(error) = error.downcast_ref::<op::transact_write_items::TransactWriteItemsError>() {
        return match error {
            op::transact_write_items::TransactWriteItemsError::TransactionCanceledException(cancelled) => cancelled
                .cancellation_reasons()
                .iter()
                .any(|reason| reason.code() == Some("ConditionalCheckFailed")),
            _ => false,
        };
    }
    let code = if let Some(e) = error.downcast_ref::<op::put_item::PutItemError>() {
        e.code()
    } else if let Some(e) = error.downcast_ref::<op::update_item::UpdateItemError>() {
        e.code()
    } else if let Some(e) = error.downcast_ref::<op::delete_item::DeleteItemError>() {
        e.code()
    } else {
        None
    };
    code == Some("ConditionalCheckFailedException")
}

fn unprocessed_keys(output: &Output) -> usize {
    output
        .downcast_ref::<op::batch_get_item::BatchGetItemOutput>()
        .and_then(|o| o.unprocessed_keys.as_ref())
        .map_or(0, |tables| tables.values().map(|k| k.keys().len()).sum())
}

/// A call's minimum charge, kept from its request until its answer.
#[derive(Clone, Debug)]
struct MinimumCharge(Kind, f64);

impl Storable for MinimumCharge {
    type Storer = StoreReplace<Self>;
}

operations! {
    get_item::GetItemInput / GetItemOutput => Read,
    batch_get_item::BatchGetItemInput / BatchGetItemOutput => Read,
    query::QueryInput / QueryOutput => Read,
    scan::ScanInput / ScanOutput => Read,
    transact_get_items::TransactGetItemsInput / TransactGetItemsOutput => Read,
    put_item::PutItemInput / PutItemOutput => Write,
    update_item::UpdateItemInput / UpdateItemOutput => Write,
    delete_item::DeleteItemInput / DeleteItemOutput => Write,
    batch_write_item::BatchWriteItemInput / BatchWriteItemOutput => Write,
    transact_write_items::TransactWriteItemsInput / TransactWriteItemsOutput => Write,
}

impl Intercept for DynamoDbUsage {
    fn name(&self) -> &'static str {
        "DynamoDbUsage"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(minimum) = ask_for_capacity(context.input_mut()) {
            cfg.interceptor_state().store_put(minimum);
        }
        Ok(())
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.round_trips.fetch_add(1, Ordering::Relaxed);
        if let (Some(metadata), Ok(mut calls)) = (cfg.load::<Metadata>(), self.0.calls.lock()) {
            *calls.entry(metadata.name().to_string()).or_default() += 1;
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let minimum = cfg.load::<MinimumCharge>().cloned();
        let charged = match (context.output_or_error(), minimum) {
            (Ok(output), minimum) => consumed(output).map(|(kind, reported)| {
                // Keys DynamoDB left unprocessed are asked (and charged) in the next call.
                let floor = minimum.map_or(0.0, |m| m.1) - 0.5 * unprocessed_keys(output) as f64;
                (kind, reported.max(floor))
            }),
            // A write refused by its condition (or a cancelled transaction) is still charged.
            (Err(error), Some(MinimumCharge(Kind::Write, units)))
                if error.as_operation_error().is_some_and(refused_by_a_condition) =>
            {
                Some((Kind::Write, units))
            }
            (Err(_), _) => None,
        };
        if let Some((kind, units)) = charged {
            let milli = (units * 1000.0).round() as u64;
            match kind {
                Kind::Read => self.0.read_milliunits.fetch_add(milli, Ordering::Relaxed),
                Kind::Write => self.0.write_milliunits.fetch_add(milli, Ordering::Relaxed),
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, TransactWriteItem, Update};
    use std::collections::HashMap;

    fn key(n: usize) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".to_string(), AttributeValue::S(format!("K{n}")))])
    }

    #[test]
    fn the_minimum_charge_is_per_key_read_and_per_item_written() {
        let keys = KeysAndAttributes::builder()
            .set_keys(Some((0..20).map(key).collect()))
            .build()
            .unwrap();
        let batch = op::batch_get_item::BatchGetItemInput::builder()
            .request_items("forum", keys)
            .build()
            .unwrap();
        assert_eq!(batch.minimum_units(), 10.0);
        let consistent = op::get_item::GetItemInput::builder()
            .consistent_read(true)
            .build()
            .unwrap();
        assert_eq!(consistent.minimum_units(), 1.0);
        let update = || {
            TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name("forum")
                        .set_key(Some(key(1)))
                        .update_expression("SET a = :a")
                        .build()
                        .unwrap(),
                )
                .build()
        };
        let transaction = op::transact_write_items::TransactWriteItemsInput::builder()
            .transact_items(update())
            .transact_items(update())
            .transact_items(update())
            .build()
            .unwrap();
        assert_eq!(transaction.minimum_units(), 6.0);
    }

    #[test]
    fn snapshots_subtract_to_what_happened_in_between() {
        let earlier = UsageSnapshot {
            round_trips: 2,
            read_units: 1.5,
            write_units: 0.0,
            calls: BTreeMap::from([("Query".to_string(), 2)]),
        };
        let later = UsageSnapshot {
            round_trips: 5,
            read_units: 12.0,
            write_units: 4.0,
            calls: BTreeMap::from([("Query".to_string(), 3), ("BatchGetItem".to_string(), 2)]),
        };
        let used = later.since(&earlier);
        assert_eq!(used.round_trips, 3);
        assert_eq!((used.read_units, used.write_units), (10.5, 4.0));
        assert_eq!((used.calls_of("Query"), used.calls_of("BatchGetItem")), (1, 2));
    }
}
