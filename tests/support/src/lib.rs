//! What Vigil's integration tests (tests/api) and benches share, one crate so both link it:
//! a Vigil of their own on a fresh migrated database ([`spawn_app`], [`TestApp`]), the real
//! binary as a child process ([`Launch`], [`Replica`]) and several of them as a cluster
//! ([`cluster`]: owners, membership, a retrying client), tenants, warm-up traffic and bursts
//! ([`traffic`]), an event log and snapshots written straight into a database ([`event_log`]),
//! and OpenBao read directly ([`Vault`]). The pure
//! builders of `vigil::testing` (typed calls, the benches' traffic) are re-exported as
//! [`testing`].

mod app;
pub mod cluster;
pub mod event_log;
mod process;
pub mod traffic;
mod vault;

pub use app::*;
pub use event_log::*;
pub use process::{Launch, Replica};
pub use traffic::*;
pub use vault::Vault;
pub use vigil::testing;
