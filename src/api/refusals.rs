//! The refusals each operation states in the OpenAPI document, composed from what decides
//! them, so each operation names its error responses once: `Refusals<Caller, Input, Missing,
//! Conflict>` in its `responses(...)`. Who may call it ([`Admin`], [`Reader`], [`Responder`],
//! the types its handler takes) gives 401 and the 403 that role meets; what it reads
//! ([`JsonBody`], [`QueryParams`], [`TomlBody`]) gives 400, 413, 415 and 422; what it may not
//! find (`NoTenant`, `NoIncident`, …) its 404 and what state it may meet (`TenantExists`,
//! `IllegalTransition`, …) its 409, each with its own words. Every operation may meet 503.
//! Every refusal's body is [`ErrorEnvelope`].

use super::auth::{Admin, Reader, Responder};
use super::error::ErrorEnvelope;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, ToSchema};

/// Some of an operation's refusals: each status with what it means there.
pub trait Refused {
    const REFUSALS: &'static [(u16, &'static str)];
}

/// Nothing to add (an operation without a body, or one that always finds what it names).
impl Refused for () {
    const REFUSALS: &'static [(u16, &'static str)] = &[];
}

/// An operation's refusals (see the module): `responses((status = 200, …), Refusals<Admin,
/// JsonBody, NoTenant>)`.
pub struct Refusals<Caller, Input = (), Missing = (), Conflict = ()>(PhantomData<(Caller, Input, Missing, Conflict)>);

const UNAUTHORIZED: (u16, &str) = (401, "No credential, or one Vigil does not know (`unauthorized`)");
const UNAVAILABLE: (u16, &str) = (
    503,
    "Vigil is busy or Postgres did not answer in time; retry after `Retry-After`",
);
const UNREADABLE: (u16, &str) = (
    400,
    "The body or query could not be read (`malformed_json`, `bad_request`)",
);
const INVALID: (u16, &str) = (
    422,
    "A field or parameter breaks its rule; `field` names it (`invalid_field`)",
);
const TOO_LARGE: (u16, &str) = (413, "The body is over its limit (`payload_too_large`)");

impl<C: Refused, I: Refused, N: Refused, X: Refused> IntoResponses for Refusals<C, I, N, X> {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let error = Ref::from_schema_name(ErrorEnvelope::name());
        [C::REFUSALS, I::REFUSALS, N::REFUSALS, X::REFUSALS, &[UNAVAILABLE]]
            .concat()
            .into_iter()
            .map(|(status, description)| {
                let content = ContentBuilder::new().schema(Some(error.clone())).build();
                let response = ResponseBuilder::new()
                    .description(description)
                    .content("application/json", content)
                    .build();
                (status.to_string(), RefOr::T(response))
            })
            .collect()
    }
}

impl Refused for Admin {
    const REFUSALS: &'static [(u16, &'static str)] = &[
        UNAUTHORIZED,
        (
            403,
            "A dashboard session: this needs the admin token (`admin_token_required`)",
        ),
    ];
}

impl Refused for Reader {
    const REFUSALS: &'static [(u16, &'static str)] = &[UNAUTHORIZED];
}

impl Refused for Responder {
    const REFUSALS: &'static [(u16, &'static str)] = &[
        UNAUTHORIZED,
        (
            403,
            "A session whose role may not act (`role_may_not_act`), or an action without the session's \
             `X-CSRF-Token` or from another origin (`csrf`)",
        ),
    ];
}

/// Defines marker types that each add refusals.
macro_rules! refusals {
    ($($(#[$meta:meta])* $name:ident: [$($refusal:expr),* $(,)?];)*) => {$(
        $(#[$meta])*
        pub struct $name;

        impl Refused for $name {
            const REFUSALS: &'static [(u16, &'static str)] = &[$($refusal),*];
        }
    )*};
}

refusals! {
    /// A JSON body (`JsonObject`, or `require_json`).
    JsonBody: [
        UNREADABLE,
        TOO_LARGE,
        (415, "The body is not sent as `application/json` (`unsupported_media_type`)"),
        INVALID,
    ];
    /// Query parameters checked one by one (`ListQuery`).
    QueryParams: [UNREADABLE, INVALID];
    /// A tenant policy file (`PUT /v1/tenants/{id}/policy`).
    TomlBody: [TOO_LARGE, (422, "The policy does not load (`field`: `policy`)")];
    NoTenant: [(404, "No such tenant")];
    /// The tenant is read from the path alone.
    NotATenantId: [(404, "Not a tenant id")];
    NoTenantOrToken: [(404, "No such tenant or token")];
    NoPolicyOverride: [(404, "The tenant has no override set through the API")];
    NoIncident: [(404, "No such incident")];
    NoRotation: [(404, "No such rotation")];
    NoOpenSuppression: [(404, "No such open suppression")];
    TenantExists: [(409, "The id is taken (`tenant_exists`)")];
    IllegalTransition: [(409, "Not allowed from the incident's status (`illegal_transition`)")];
    RotationInProgress: [(409, "The rotation is pending or running (`rotation_in_progress`)")];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_states_each_status_once_with_503_always() {
        let responses = Refusals::<Responder, JsonBody, NoIncident, IllegalTransition>::responses();
        let statuses: Vec<&str> = responses.keys().map(String::as_str).collect();
        assert_eq!(
            statuses,
            ["400", "401", "403", "404", "409", "413", "415", "422", "503"]
        );
        assert_eq!(
            Refusals::<Reader>::responses().keys().collect::<Vec<_>>(),
            ["401", "503"]
        );
    }
}
