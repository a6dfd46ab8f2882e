//! Request bodies as the server decodes them: JSON, YAML and protobuf
//! object bodies through strict field validation, defaulting and validation;
//! PATCH bodies of every type; selectors. Must never panic.
//! Run: `cd crates/apiserver/fuzz && cargo +nightly fuzz run decode_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    orca_apiserver::fuzzing::exercise(data);
});
