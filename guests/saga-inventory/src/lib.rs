//! `saga-inventory`: the stock-keeping step of the order saga
//! (`examples/saga/`).
//!
//! Consumes two topics, both keyed by SKU so that one SKU's events always meet
//! the same state:
//!
//! - `order-placed` (`{"order_id", "sku", "qty", "amount_cents", "card"}`):
//!   if the SKU has `qty` units left, it takes them, records the reservation
//!   and publishes the order with `"status": "reserved"` to `reservations`;
//!   otherwise it publishes
//!   `{"order_id", "sku", "qty", "status": "cancelled", "reason": "out of stock"}`
//!   to `order-results`. An order it already holds a reservation for is
//!   ignored.
//! - `compensations` (`{"order_id", "sku", "action": "release"}`): if the
//!   order's reservation exists it puts the units back, deletes the
//!   reservation and publishes
//!   `{"order_id", "sku", "qty", "status": "cancelled", "reason": "payment declined"}`
//!   to `order-results`; if it does not exist (already released, or never
//!   made), it does nothing, so a release is idempotent.
//!
//! Every output is keyed by the SKU. Each SKU starts with config
//! `initial_stock` units (default 100).
//!
//! State layout (JSON values): `stock/<sku>` is the units left (absent means
//! `initial_stock`), `reservation/<order_id>` is `{"sku", "qty"}` while the
//! order holds units.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use weir_sdk::{Event, Handler, HandlerError, Output, Result, config, log, state};

/// The inventory handler.
pub struct Inventory;

/// Input: orders that passed validation.
pub const ORDER_PLACED: &str = "order-placed";
/// Input: releases asked for by the payment step.
pub const COMPENSATIONS: &str = "compensations";
/// Output: orders holding stock, on their way to payment.
pub const RESERVATIONS: &str = "reservations";
/// Output: final outcomes decided here (cancellations).
pub const ORDER_RESULTS: &str = "order-results";

/// Stock per SKU when config `initial_stock` is not set.
pub const DEFAULT_INITIAL_STOCK: u64 = 100;

/// The fields of a placed order this step needs; the others pass through.
#[derive(Debug, Deserialize)]
struct Placed {
    order_id: String,
    sku: String,
    qty: u64,
}

/// A compensating event from the payment step.
#[derive(Debug, Deserialize)]
struct Compensation {
    order_id: String,
    sku: String,
    action: String,
}

/// Units held for an order, stored under `reservation/<order_id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The SKU the units were taken from.
    pub sku: String,
    /// How many units.
    pub qty: u64,
}

impl Handler for Inventory {
    fn handle(event: Event) -> Result<Vec<Output>> {
        match event.topic.as_str() {
            ORDER_PLACED => reserve(&event),
            COMPENSATIONS => release(&event),
            other => Err(HandlerError::reject(format!(
                "event {}: unexpected topic {other:?}; subscribe this handler to \
                 {ORDER_PLACED:?} and {COMPENSATIONS:?} only",
                event.id
            ))),
        }
    }
}

/// Handle a placed order: reserve its units, or cancel it for lack of stock.
fn reserve(event: &Event) -> Result<Vec<Output>> {
    let order: Placed = event.json()?;
    let mut reserved: Map<String, Value> = event.json()?;
    let reservation_key = reservation_key(&order.order_id);
    if state::get(&reservation_key).is_some() {
        log::warn!(
            "order {} already holds a reservation; ignoring event {}",
            order.order_id,
            event.id
        );
        return Ok(Vec::new());
    }
    let left = stock(&order.sku)?;
    if left < order.qty {
        let result = json!({
            "order_id": order.order_id,
            "sku": order.sku,
            "qty": order.qty,
            "status": "cancelled",
            "reason": "out of stock",
        });
        return Ok(vec![
            Output::json(ORDER_RESULTS, &result)?.with_key(order.sku),
        ]);
    }
    state::set_json(&stock_key(&order.sku), &(left - order.qty))?;
    let reservation = Reservation {
        sku: order.sku.clone(),
        qty: order.qty,
    };
    state::set_json(&reservation_key, &reservation)?;
    reserved.insert("status".into(), "reserved".into());
    Ok(vec![
        Output::json(RESERVATIONS, &reserved)?.with_key(order.sku),
    ])
}

/// Handle a compensation: give a reservation's units back, once.
fn release(event: &Event) -> Result<Vec<Output>> {
    let compensation: Compensation = event.json()?;
    if compensation.action != "release" {
        return Err(HandlerError::reject(format!(
            "event {}: unknown compensation action {:?}",
            event.id, compensation.action
        )));
    }
    let reservation_key = reservation_key(&compensation.order_id);
    let Some(reservation) = state::get_json::<Reservation>(&reservation_key)? else {
        log::info!(
            "order {} holds no reservation; nothing to release",
            compensation.order_id
        );
        return Ok(Vec::new());
    };
    if reservation.sku != compensation.sku {
        log::warn!(
            "order {}: compensation names SKU {} but the reservation holds {}; releasing {}",
            compensation.order_id,
            compensation.sku,
            reservation.sku,
            reservation.sku
        );
    }
    let left = stock(&reservation.sku)?;
    state::set_json(&stock_key(&reservation.sku), &(left + reservation.qty))?;
    state::delete(&reservation_key);
    let result = json!({
        "order_id": compensation.order_id,
        "sku": reservation.sku,
        "qty": reservation.qty,
        "status": "cancelled",
        "reason": "payment declined",
    });
    Ok(vec![
        Output::json(ORDER_RESULTS, &result)?.with_key(reservation.sku),
    ])
}

/// Units of `sku` left.
fn stock(sku: &str) -> Result<u64> {
    match state::get_json::<u64>(&stock_key(sku))? {
        Some(left) => Ok(left),
        None => initial_stock(),
    }
}

/// Config `initial_stock`, or the default.
fn initial_stock() -> Result<u64> {
    let Some(value) = config::get("initial_stock") else {
        return Ok(DEFAULT_INITIAL_STOCK);
    };
    value.trim().parse().map_err(|e| {
        HandlerError::reject(format!(
            "config initial_stock = {value:?} is not a whole number of units: {e}"
        ))
    })
}

fn stock_key(sku: &str) -> String {
    format!("stock/{sku}")
}

fn reservation_key(order_id: &str) -> String {
    format!("reservation/{order_id}")
}

weir_sdk::export_handler!(Inventory);

// Unit tests run natively, where the SDK backs state, config and logs with
// in-memory maps; `weir_sdk::testing` does not exist in the component build.
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests {
    use super::*;
    use weir_sdk::testing;

    fn placed(order_id: &str, sku: &str, qty: u64) -> Result<Vec<Output>> {
        let order = json!({
            "order_id": order_id, "sku": sku, "qty": qty,
            "amount_cents": 1500, "card": "declined",
        });
        Inventory::handle(
            testing::event(ORDER_PLACED, order.to_string())
                .key(sku)
                .build(),
        )
    }

    fn compensate(order_id: &str, sku: &str) -> Result<Vec<Output>> {
        let body = json!({"order_id": order_id, "sku": sku, "action": "release"});
        Inventory::handle(
            testing::event(COMPENSATIONS, body.to_string())
                .key(sku)
                .build(),
        )
    }

    fn body(output: &Output) -> Value {
        serde_json::from_slice(&output.payload).unwrap()
    }

    fn stock_of(sku: &str) -> Option<u64> {
        state::get_json(&stock_key(sku)).unwrap()
    }

    #[test]
    fn reserves_while_stock_lasts_then_cancels() {
        testing::set_config("initial_stock", "5");
        let out = placed("o-1", "apples", 3).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].topic, RESERVATIONS);
        assert_eq!(out[0].key.as_deref(), Some("apples"));
        assert_eq!(
            body(&out[0]),
            json!({"order_id": "o-1", "sku": "apples", "qty": 3,
                   "amount_cents": 1500, "card": "declined", "status": "reserved"})
        );
        assert_eq!(stock_of("apples"), Some(2));

        let out = placed("o-2", "apples", 3).unwrap();
        assert_eq!(out[0].topic, ORDER_RESULTS);
        assert_eq!(out[0].key.as_deref(), Some("apples"));
        assert_eq!(
            body(&out[0]),
            json!({"order_id": "o-2", "sku": "apples", "qty": 3,
                   "status": "cancelled", "reason": "out of stock"})
        );
        assert_eq!(stock_of("apples"), Some(2), "a cancellation takes nothing");
        assert_eq!(state::get("reservation/o-2"), None);

        // Exactly the rest can still be reserved; other SKUs are separate.
        assert_eq!(placed("o-3", "apples", 2).unwrap()[0].topic, RESERVATIONS);
        assert_eq!(stock_of("apples"), Some(0));
        assert_eq!(placed("o-4", "pears", 5).unwrap()[0].topic, RESERVATIONS);
        assert_eq!(stock_of("pears"), Some(0));
    }

    #[test]
    fn default_stock_is_a_hundred() {
        assert_eq!(placed("o-1", "figs", 100).unwrap()[0].topic, RESERVATIONS);
        assert_eq!(placed("o-2", "figs", 1).unwrap()[0].topic, ORDER_RESULTS);
    }

    #[test]
    fn a_release_puts_the_units_back_once() {
        testing::set_config("initial_stock", "4");
        placed("o-1", "apples", 3).unwrap();
        assert_eq!(
            state::get_json::<Reservation>("reservation/o-1").unwrap(),
            Some(Reservation {
                sku: "apples".into(),
                qty: 3
            })
        );

        let out = compensate("o-1", "apples").unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].topic, ORDER_RESULTS);
        assert_eq!(out[0].key.as_deref(), Some("apples"));
        assert_eq!(
            body(&out[0]),
            json!({"order_id": "o-1", "sku": "apples", "qty": 3,
                   "status": "cancelled", "reason": "payment declined"})
        );
        assert_eq!(stock_of("apples"), Some(4));
        assert_eq!(state::get("reservation/o-1"), None);

        // A second release, or one for an order never reserved, does nothing.
        assert!(compensate("o-1", "apples").unwrap().is_empty());
        assert!(compensate("o-9", "apples").unwrap().is_empty());
        assert_eq!(stock_of("apples"), Some(4));
    }

    #[test]
    fn an_order_already_reserved_is_not_reserved_twice() {
        testing::set_config("initial_stock", "10");
        placed("o-1", "apples", 3).unwrap();
        assert!(placed("o-1", "apples", 3).unwrap().is_empty());
        assert_eq!(stock_of("apples"), Some(7));
    }

    #[test]
    fn bad_inputs_and_config_are_rejected() {
        let bad = Inventory::handle(testing::event(ORDER_PLACED, "{}").build()).unwrap_err();
        assert!(!bad.is_retry());
        let body = json!({"order_id": "o-1", "sku": "apples", "action": "refund"});
        let err =
            Inventory::handle(testing::event(COMPENSATIONS, body.to_string()).build()).unwrap_err();
        assert!(
            err.message().contains("unknown compensation action"),
            "{err}"
        );
        let err = Inventory::handle(testing::event("other", "{}").build()).unwrap_err();
        assert!(err.message().contains("unexpected topic"), "{err}");

        testing::set_config("initial_stock", "lots");
        let err = placed("o-1", "apples", 1).unwrap_err();
        assert!(!err.is_retry());
        assert!(err.message().contains("initial_stock"), "{err}");
        assert!(testing::state_snapshot().is_empty(), "nothing written");
    }
}
