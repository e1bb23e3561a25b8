//! `saga-payment`: the payment step of the order saga (`examples/saga/`).
//!
//! Consumes `reservations`
//! (`{"order_id", "sku", "qty", "amount_cents", "card", "status": "reserved"}`)
//! and charges the card; the example's stand-in for a payment provider is the
//! order's `card` field. A card that is `"ok"` confirms the order:
//! `{"order_id", "sku", "qty", "amount_cents", "status": "confirmed"}` goes to
//! `order-results`. A `"declined"` card asks the inventory step to give the
//! reserved units back: `{"order_id", "sku", "action": "release"}` goes to
//! `compensations`. Both are keyed by the SKU, so the compensation reaches the
//! partition holding the reservation.
//!
//! Stateless: each reservation gets exactly one outcome, and the host makes
//! sure each reservation is handled once.

use serde::{Deserialize, Serialize};
use serde_json::json;
use weir_sdk::{Event, Handler, HandlerError, Output, Result};

/// The payment handler.
pub struct Payment;

/// Output: final outcomes decided here (confirmations).
pub const ORDER_RESULTS: &str = "order-results";
/// Output: releases for the inventory step.
pub const COMPENSATIONS: &str = "compensations";

/// What charging the card does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Card {
    Ok,
    Declined,
}

/// A reserved order, as the inventory step publishes it.
#[derive(Debug, Deserialize)]
struct Reserved {
    order_id: String,
    sku: String,
    qty: u64,
    amount_cents: u64,
    card: Card,
    status: String,
}

impl Handler for Payment {
    fn handle(event: Event) -> Result<Vec<Output>> {
        let order: Reserved = event.json()?;
        if order.status != "reserved" {
            return Err(HandlerError::reject(format!(
                "event {}: expected a reservation, got status {:?}",
                event.id, order.status
            )));
        }
        let output = match order.card {
            Card::Ok => Output::json(
                ORDER_RESULTS,
                &json!({
                    "order_id": order.order_id,
                    "sku": order.sku,
                    "qty": order.qty,
                    "amount_cents": order.amount_cents,
                    "status": "confirmed",
                }),
            )?,
            Card::Declined => Output::json(
                COMPENSATIONS,
                &json!({
                    "order_id": order.order_id,
                    "sku": order.sku,
                    "action": "release",
                }),
            )?,
        };
        Ok(vec![output.with_key(order.sku)])
    }
}

weir_sdk::export_handler!(Payment);

// Unit tests run natively, where the SDK backs state, config and logs with
// in-memory maps; `weir_sdk::testing` does not exist in the component build.
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests {
    use super::*;
    use serde_json::Value;
    use weir_sdk::testing;

    fn reserved(card: &str) -> Value {
        json!({"order_id": "o-1", "sku": "pears", "qty": 2, "amount_cents": 900,
               "card": card, "status": "reserved"})
    }

    fn pay(payload: &Value) -> Result<Vec<Output>> {
        Payment::handle(
            testing::event("reservations", payload.to_string())
                .key("pears")
                .build(),
        )
    }

    fn body(output: &Output) -> Value {
        serde_json::from_slice(&output.payload).unwrap()
    }

    #[test]
    fn an_ok_card_confirms_the_order() {
        let out = pay(&reserved("ok")).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].topic, ORDER_RESULTS);
        assert_eq!(out[0].key.as_deref(), Some("pears"));
        assert_eq!(
            body(&out[0]),
            json!({"order_id": "o-1", "sku": "pears", "qty": 2, "amount_cents": 900,
                   "status": "confirmed"})
        );
        assert!(testing::state_snapshot().is_empty(), "stateless");
    }

    #[test]
    fn a_declined_card_asks_for_a_release() {
        let out = pay(&reserved("declined")).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].topic, COMPENSATIONS);
        assert_eq!(out[0].key.as_deref(), Some("pears"));
        assert_eq!(
            body(&out[0]),
            json!({"order_id": "o-1", "sku": "pears", "action": "release"})
        );
    }

    #[test]
    fn anything_but_a_reservation_is_rejected() {
        let mut wrong_status = reserved("ok");
        wrong_status["status"] = json!("confirmed");
        let mut unknown_card = reserved("ok");
        unknown_card["card"] = json!("maybe");
        for case in [wrong_status, unknown_card, json!({}), json!("x")] {
            let err = pay(&case).unwrap_err();
            assert!(!err.is_retry(), "{case}: {err}");
        }
    }
}
