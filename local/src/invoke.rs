//! Invoking a function as Lambda does: the event is the JSON Lambda would deliver, read into
//! the handler's own event type by serde (as the runtime reads it), and the answer goes back
//! to JSON. So an event forum-local builds wrongly fails here, as it would fail in AWS.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// `json` read as the event type `T`; the error says what did not fit.
pub fn event<T: DeserializeOwned>(json: Value) -> Result<T, String> {
    serde_json::from_value(json).map_err(|e| {
        tracing::error!(error = %e, event = std::any::type_name::<T>(), "an event Lambda would not deliver");
        format!("the event does not fit {}: {e}", std::any::type_name::<T>())
    })
}

/// A handler's answer as the runtime sends it back.
pub fn answer<T: Serialize>(answer: &T) -> Value {
    serde_json::to_value(answer).unwrap_or(Value::Null)
}
