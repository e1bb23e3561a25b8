//! `saga-orders`: the first step of the order saga (`examples/saga/`).
//!
//! Consumes `orders`, whose payload is
//! `{"order_id": "o-1", "sku": "apples", "qty": 2, "amount_cents": 1500, "card": "ok"}`
//! (`card` is `"ok"` or `"declined"`; other fields are ignored), validates
//! it and publishes the same fields to `order-placed`, keyed by the SKU so
//! that every later event of the saga about that SKU lands in the partition
//! holding its stock. An order that is not valid JSON, misses a field, has an
//! empty ID or SKU, a zero quantity or amount, or an unknown card outcome can
//! never succeed: it is rejected, so the host dead-letters it.
//!
//! Stateless: deduplicating producer retries is the host's job.

use serde::{Deserialize, Serialize};
use weir_sdk::{Event, Handler, HandlerError, Output, Result};

/// The orders handler.
pub struct PlaceOrder;

/// Where valid orders go.
pub const ORDER_PLACED: &str = "order-placed";

/// What the payment step will do with the order's card (the example's
/// stand-in for a payment provider's answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Card {
    /// The payment goes through.
    Ok,
    /// The payment is declined, and the reservation must be released.
    Declined,
}

/// An order, as producers send it and as `order-placed` carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order's business ID.
    pub order_id: String,
    /// The stock-keeping unit ordered.
    pub sku: String,
    /// Units ordered, at least 1.
    pub qty: u32,
    /// The amount to charge, in cents, at least 1.
    pub amount_cents: u64,
    /// The card outcome.
    pub card: Card,
}

impl Order {
    /// Parse and validate an order from an event's payload.
    pub fn parse(event: &Event) -> Result<Self> {
        let order: Self = event.json()?;
        let problem = if order.order_id.trim().is_empty() {
            Some("order_id is empty")
        } else if order.sku.trim().is_empty() {
            Some("sku is empty")
        } else if order.qty == 0 {
            Some("qty must be at least 1")
        } else if order.amount_cents == 0 {
            Some("amount_cents must be at least 1")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(HandlerError::reject(format!(
                "event {}: invalid order: {problem}",
                event.id
            ))),
            None => Ok(order),
        }
    }
}

impl Handler for PlaceOrder {
    fn handle(event: Event) -> Result<Vec<Output>> {
        let order = Order::parse(&event)?;
        let output = Output::json(ORDER_PLACED, &order)?.with_key(order.sku.as_str());
        Ok(vec![output])
    }
}

weir_sdk::export_handler!(PlaceOrder);

// Unit tests run natively, where the SDK backs state, config and logs with
// in-memory maps; `weir_sdk::testing` does not exist in the component build.
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use weir_sdk::testing;

    fn place(payload: &Value) -> Result<Vec<Output>> {
        PlaceOrder::handle(testing::event("orders", payload.to_string()).build())
    }

    fn valid() -> Value {
        json!({"order_id": "o-1", "sku": "apples", "qty": 2, "amount_cents": 1500, "card": "ok"})
    }

    #[test]
    fn a_valid_order_is_placed_keyed_by_sku() {
        let out = place(&valid()).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].topic, ORDER_PLACED);
        assert_eq!(out[0].key.as_deref(), Some("apples"));
        assert!(out[0].headers.is_empty());
        let body: Value = serde_json::from_slice(&out[0].payload).unwrap();
        assert_eq!(body, valid());
    }

    #[test]
    fn declined_cards_pass_and_unknown_fields_are_dropped() {
        let mut order = valid();
        order["card"] = json!("declined");
        order["note"] = json!("gift");
        let out = place(&order).unwrap();
        let body: Value = serde_json::from_slice(&out[0].payload).unwrap();
        assert_eq!(body["card"], "declined");
        assert!(body.get("note").is_none());
        assert!(testing::state_snapshot().is_empty(), "stateless");
    }

    #[test]
    fn malformed_orders_are_rejected() {
        let mut cases = vec![json!("not an object"), json!([1, 2]), json!({})];
        for (field, bad) in [
            ("order_id", json!("")),
            ("order_id", json!(7)),
            ("sku", json!("  ")),
            ("qty", json!(0)),
            ("qty", json!(-1)),
            ("qty", json!(1.5)),
            ("amount_cents", json!(0)),
            ("card", json!("maybe")),
        ] {
            let mut order = valid();
            order[field] = bad;
            cases.push(order);
        }
        let mut missing = valid();
        missing.as_object_mut().unwrap().remove("sku");
        cases.push(missing);
        for case in cases {
            let err = place(&case).unwrap_err();
            assert!(!err.is_retry(), "{case}: {err}");
        }
        let err = PlaceOrder::handle(testing::event("orders", "{").build()).unwrap_err();
        assert!(!err.is_retry());
        let mut zero = valid();
        zero["qty"] = json!(0);
        let err = PlaceOrder::handle(testing::event("orders", zero.to_string()).id("m-9").build())
            .unwrap_err();
        assert_eq!(
            err.message(),
            "event m-9: invalid order: qty must be at least 1"
        );
    }
}
