//! NDJSON bytes → `Event`s → `Aggregator::push` → finish → price.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ratecard_fuzz::parse_event(data);
});
