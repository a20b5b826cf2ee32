//! What every HTTP surface (the API, ingest, the dashboard) shares and none of them owns: the
//! state handlers take ([`AppState`]) and the services they call back into, who is calling
//! ([`auth`]), and each tenant's ingest requests in flight ([`fair`]). It imports none of
//! those surfaces, so they depend on it and never on each other's internals.

pub mod auth;
pub mod fair;
pub(crate) mod forward;
mod state;

pub use state::AppState;
