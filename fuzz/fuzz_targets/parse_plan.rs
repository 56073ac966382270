//! Plan JSON → `Plan` → validation → a quote for period 0 with no usage.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ratecard_fuzz::parse_plan(data);
});
