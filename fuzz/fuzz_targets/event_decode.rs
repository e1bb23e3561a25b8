//! The event API's decoder: any body either decodes into records that
//! survive the store's encoding, or is refused with a message; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir::admin::events::{parse_events, to_record};
use weir::store::{LogRecord, decode, encode};

fuzz_target!(|body: &[u8]| {
    let Ok(events) = parse_events(body) else {
        return;
    };
    for event in events {
        if let Ok(record) = to_record(event, 0) {
            let bytes = encode(&record);
            let back: LogRecord = decode(b"fuzz", &bytes).expect("a record round-trips");
            assert_eq!(back, record);
        }
    }
});
