//! Rules DynamoDB enforces that DynamoDB Local does not: checked on every call a function
//! makes here (with its role, in [`crate::iam::IamCheck`]), so a call a deployment would have
//! refused fails here too.
//!
//! - A transaction holds 1 to 100 actions, and no two on the same item ("Transaction request
//!   cannot include multiple operations on one item"). DynamoDB Local accepts two and applies
//!   them; DynamoDB refuses the whole request with a `ValidationException`, which no retry
//!   mends.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use aws_smithy_runtime_api::client::interceptors::context::Input;

/// Why DynamoDB would refuse this call, if it would.
pub fn refusal(input: &Input) -> Option<String> {
    let tx = input.downcast_ref::<TransactWriteItemsInput>()?;
    let actions = tx.transact_items();
    if actions.is_empty() || actions.len() > 100 {
        return Some(format!(
            "ValidationException: a transaction holds 1 to 100 actions, not {}",
            actions.len()
        ));
    }
    let mut seen: Vec<(String, String)> = Vec::new();
    for action in actions {
        let target = target_of(action)?;
        if seen.contains(&target) {
            return Some(format!(
                "ValidationException: Transaction request cannot include multiple operations on one item ({} / {})",
                target.0, target.1
            ));
        }
        seen.push(target);
    }
    None
}

/// The table and key (as text) an action writes or checks.
fn target_of(action: &TransactWriteItem) -> Option<(String, String)> {
    let key_text = |key: &std::collections::HashMap<String, AttributeValue>| {
        let mut parts: Vec<String> = key
            .iter()
            .filter(|(name, _)| name.as_str() == "pk" || name.as_str() == "sk")
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect();
        parts.sort();
        parts.join(",")
    };
    if let Some(put) = action.put() {
        return Some((put.table_name().to_string(), key_text(put.item())));
    }
    if let Some(update) = action.update() {
        return Some((update.table_name().to_string(), key_text(update.key())));
    }
    if let Some(delete) = action.delete() {
        return Some((delete.table_name().to_string(), key_text(delete.key())));
    }
    action
        .condition_check()
        .map(|check| (check.table_name().to_string(), key_text(check.key())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::{ConditionCheck, Update};

    fn key(pk: &str, sk: &str) -> std::collections::HashMap<String, AttributeValue> {
        std::collections::HashMap::from([
            ("pk".to_string(), AttributeValue::S(pk.into())),
            ("sk".to_string(), AttributeValue::S(sk.into())),
        ])
    }

    fn update(pk: &str, sk: &str) -> TransactWriteItem {
        let update = Update::builder()
            .table_name("t")
            .set_key(Some(key(pk, sk)))
            .update_expression("SET a = :a")
            .build()
            .unwrap();
        TransactWriteItem::builder().update(update).build()
    }

    fn check(pk: &str, sk: &str) -> TransactWriteItem {
        let check = ConditionCheck::builder()
            .table_name("t")
            .set_key(Some(key(pk, sk)))
            .condition_expression("attribute_exists(pk)")
            .build()
            .unwrap();
        TransactWriteItem::builder().condition_check(check).build()
    }

    fn input(actions: Vec<TransactWriteItem>) -> Input {
        Input::erase(
            TransactWriteItemsInput::builder()
                .set_transact_items(Some(actions))
                .build()
                .unwrap(),
        )
    }

    #[test]
    fn two_actions_on_one_item_are_refused_as_dynamodb_refuses_them() {
        assert_eq!(refusal(&input(vec![update("A", "1"), update("A", "2")])), None);
        let twice = refusal(&input(vec![update("A", "1"), check("A", "1")])).unwrap_or_default();
        assert!(twice.contains("multiple operations on one item"), "{twice}");
        assert!(refusal(&input(Vec::new())).is_some());
        let many: Vec<TransactWriteItem> = (0..101).map(|i| update("A", &i.to_string())).collect();
        assert!(refusal(&input(many)).is_some());
    }
}
