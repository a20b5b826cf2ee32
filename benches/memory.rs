//! Memory per tenant: the bytes a tenant's learned state holds, counted by the allocator
//! (every live allocation at its requested size, so exact up to the allocator's own
//! rounding), for a typical tenant and for one at the default bounds ([`Limits`]).
//!
//! - typical: 20 tools with six parameters of every kind, two hours of calls at 2 per
//!   tool-minute (the traffic of `benches/detect.rs`);
//! - worst case: what an agent trying to make Vigil grow gets to at most under the default
//!   limits: 1,000 tools with 200-byte names, each with its failure rate and the rate's state,
//!   and 4,096 parameter paths of 128 bytes, each a full value set of 32 values of 64 bytes,
//!   followed by 100,000 more tool names and new keys that the bounds keep out.
//!
//! `cargo bench --bench memory`

#![allow(unsafe_code, reason = "a GlobalAlloc that counts must implement an unsafe trait")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};
use vigil::baseline::{Limits, TenantBaseline};
use vigil::detect::DetectConfig;
use vigil::event::{Outcome, ToolCallEvent};
use vigil_test_support::testing::{self, detect_then_observe, six_params};

/// Counts the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Folds the events `make(n)` for n in `0..count` as the shard does (detect, then observe
/// within the limits) and returns the bytes the baseline holds afterwards. Each event is made
/// and dropped inside the loop, so only the baseline's allocations remain.
fn fold(count: usize, config: &DetectConfig, make: impl Fn(usize) -> ToolCallEvent) -> (TenantBaseline, usize) {
    let before = LIVE.load(Relaxed);
    let mut baseline = Box::new(TenantBaseline::new(config.rate));
    for n in 0..count {
        detect_then_observe(&mut baseline, &make(n), config);
    }
    let bytes = (LIVE.load(Relaxed) - before) as usize;
    (*baseline, bytes)
}

/// Call `n`, one in ten failing.
fn call(n: usize, tool: String, at: DateTime<Utc>, params: Value) -> ToolCallEvent {
    let mut event = testing::call(n, &tool, at, params);
    if n.is_multiple_of(10) {
        event.outcome = Outcome::Error;
    }
    event
}

fn padded(prefix: String, len: usize) -> String {
    let mut s = prefix;
    while s.len() < len {
        s.push('x');
    }
    s
}

fn main() {
    let config = DetectConfig::default();
    let start = testing::start();

    // Typical: 20 tools, 2 calls per tool-minute for two hours, six parameters.
    let (typical, bytes) = fold(20 * 2 * 120, &config, |n| {
        let at = start + Duration::seconds(n as i64 * 3 / 2);
        call(n, format!("tool.number_{}", n % 20), at, six_params(n / 20))
    });
    println!(
        "typical tenant ({} tools, {} parameter paths, {} events): {bytes} bytes ({:.0} KB)",
        typical.tool_count(),
        typical.key_count(),
        typical.events_seen(),
        bytes as f64 / 1024.0
    );

    // Worst case at the default bounds: 40 calls of each of 1,000 tools over two hours; the
    // first 64 tools carry 64 keys each (4,096 in all), each taking 32 distinct values.
    let limits = Limits::default();
    let tools = limits.tools;
    let calls_per_tool = 40;
    let keyed_tools = limits.keys / limits.keys_per_tool;
    let worst = |n: usize| {
        let (t, k) = (n % tools, n / tools);
        let params: Map<String, Value> = if t < keyed_tools {
            (0..limits.keys_per_tool)
                .map(|j| {
                    let key = padded(format!("k{j:02}_"), limits.path_len);
                    let value = padded(format!("{t}-{j}-{}-", k % limits.values), limits.value_len);
                    (key, Value::String(value))
                })
                .collect()
        } else {
            Map::new()
        };
        let at = start + Duration::seconds((n * 7200 / (tools * calls_per_tool)) as i64);
        call(n, padded(format!("tool.{t:04}."), 200), at, Value::Object(params))
    };
    let (full, bytes) = fold(tools * calls_per_tool, &config, worst);
    println!(
        "tenant at the default bounds ({} tools, {} parameter paths, {} events): {bytes} bytes ({:.1} MB)",
        full.tool_count(),
        full.key_count(),
        full.events_seen(),
        bytes as f64 / 1e6
    );

    // Then 100,000 new tool names and new keys on known tools: nothing more is kept.
    let before = LIVE.load(Relaxed);
    let mut full = full;
    for n in 0..100_000 {
        let at = start + Duration::seconds(7200 + n as i64 / 10);
        let event = if n % 2 == 0 {
            call(n, format!("flood.{n:06}"), at, json!({}))
        } else {
            call(
                n,
                padded("tool.0000.".into(), 200),
                at,
                json!({ format!("new_{n}"): n }),
            )
        };
        detect_then_observe(&mut full, &event, &config);
    }
    let grown = LIVE.load(Relaxed) - before;
    println!(
        "after 100,000 more events inventing tools and keys: {} tools, {} parameter paths, {grown:+} bytes",
        full.tool_count(),
        full.key_count()
    );
}
