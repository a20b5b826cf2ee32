//! `POST /v1/traces` bodies, protobuf and JSON: decoding, then the span → event mapping.
//! Never panics; every tool-call span is either an event or a rejection.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::event::EventLimits;
use vigil::otlp::{self, Encoding};

fuzz_target!(|data: &[u8]| {
    let limits = EventLimits {
        now: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a valid instant"),
        max_future: chrono::Duration::minutes(5),
        retention: chrono::Duration::days(3650),
    };
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let Ok(request) = otlp::decode(encoding, data.to_vec().into()) else {
            continue;
        };
        let spans: usize = request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        let mapped = otlp::map_request(&request, &limits);
        assert_eq!(mapped.events.len() + mapped.rejected.len() + mapped.ignored, spans);
    }
});
