//! Values kept in `text` columns, read and written as their types: every closed set (a
//! status, a severity, a trigger, a detector, a kind) as its enum, and tenant ids as
//! [`TenantId`], parsed once where the row is decoded. The stored text is each value's name,
//! as it always was, so the database needs no migration; a row holding anything else fails to
//! decode (a 500, logged) instead of travelling on as a string.

use crate::detect::{Detector, Severity};
use crate::event::{Outcome, TenantId};
use crate::policy::{Action, Mode, Scope};
use crate::secrets::Effect;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

/// A closed set of values stored by name in a `text` column under a CHECK constraint.
pub trait TextEnum: Copy + 'static {
    /// Every value, in the order messages list them.
    const ALL: &'static [Self];

    /// The stored name (the same as the value's JSON).
    fn name(self) -> &'static str;

    fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == s)
    }

    /// `a, b, c`: the names, for a message that says what is allowed.
    fn names() -> String {
        Self::ALL.iter().map(|v| v.name()).collect::<Vec<_>>().join(", ")
    }
}

/// Reads and writes each type as its [`TextEnum`] name in a `text` column.
macro_rules! text_column {
    ($($ty:ty),* $(,)?) => {$(
        impl ::sqlx::Type<::sqlx::Postgres> for $ty {
            fn type_info() -> ::sqlx::postgres::PgTypeInfo {
                <&str as ::sqlx::Type<::sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &::sqlx::postgres::PgTypeInfo) -> bool {
                <&str as ::sqlx::Type<::sqlx::Postgres>>::compatible(ty)
            }
        }

        impl ::sqlx::Encode<'_, ::sqlx::Postgres> for $ty {
            fn encode_by_ref(
                &self,
                buf: &mut ::sqlx::postgres::PgArgumentBuffer,
            ) -> Result<::sqlx::encode::IsNull, ::sqlx::error::BoxDynError> {
                <&str as ::sqlx::Encode<::sqlx::Postgres>>::encode($crate::store::text::TextEnum::name(*self), buf)
            }
        }

        impl<'r> ::sqlx::Decode<'r, ::sqlx::Postgres> for $ty {
            fn decode(value: ::sqlx::postgres::PgValueRef<'r>) -> Result<Self, ::sqlx::error::BoxDynError> {
                let text = <&str as ::sqlx::Decode<::sqlx::Postgres>>::decode(value)?;
                <$ty as $crate::store::text::TextEnum>::from_name(text)
                    .ok_or_else(|| format!("{text:?} is not a {}", stringify!($ty)).into())
            }
        }
    )*};
}
pub(crate) use text_column;

/// Defines an enum stored by name: its variants with their names, `as_str`, `ALL`,
/// `Display` (the name), [`TextEnum`] and the column impls. The derives (serde, utoipa) come
/// with the item; a unit test checks that serde names each value as the column does.
macro_rules! text_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident {
        $($(#[$vmeta:meta])* $variant:ident = $text:literal),* $(,)?
    }) => {
        $(#[$meta])*
        $vis enum $name {
            $($(#[$vmeta])* $variant),*
        }

        impl $name {
            pub const ALL: [$name; [$($text),*].len()] = [$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::store::text::TextEnum for $name {
            const ALL: &'static [Self] = &$name::ALL;

            fn name(self) -> &'static str {
                self.as_str()
            }
        }

        $crate::store::text::text_column!($name);
    };
}
pub(crate) use text_enum;

/// The domain's enums, which name their values with `as_str`, as text columns.
macro_rules! domain_text_enum {
    ($($ty:ty: $all:expr;)*) => {$(
        impl TextEnum for $ty {
            const ALL: &'static [Self] = $all;

            fn name(self) -> &'static str {
                self.as_str()
            }
        }

        text_column!($ty);
    )*};
}

domain_text_enum! {
    Severity: &Severity::ALL;
    Detector: &Detector::ALL;
    Action: &[Action::Record, Action::Alert, Action::Rotate];
    Scope: &[Scope::Tool, Scope::Tenant];
    Mode: &[Mode::Observe, Mode::Alert, Mode::Rotate];
    Outcome: &[Outcome::Success, Outcome::Error, Outcome::Denied];
    Effect: &[Effect::Revoked, Effect::StoredCopyReplaced];
}

impl Type<Postgres> for TenantId {
    fn type_info() -> PgTypeInfo {
        <&str as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for TenantId {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Postgres>>::encode(self.as_ref(), buf)
    }
}

impl<'r> Decode<'r, Postgres> for TenantId {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(TenantId::parse(<&str as Decode<Postgres>>::decode(value)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::alerts::{AlertKind, DeliveryStatus};
    use crate::store::incidents::{IncidentStatus, TimelineKind};
    use crate::store::rotations::{RotationStatus, RotationTrigger};

    /// Every value's column name is its JSON name, and names come back as the same value.
    fn names_agree<T: TextEnum + serde::Serialize + PartialEq + std::fmt::Debug>() {
        for &v in T::ALL {
            assert_eq!(serde_json::to_value(v).unwrap(), v.name(), "{v:?}");
            assert_eq!(T::from_name(v.name()), Some(v));
        }
        assert_eq!(T::from_name("no such value"), None);
    }

    #[test]
    fn every_stored_enum_is_named_in_the_column_as_in_json() {
        names_agree::<Severity>();
        names_agree::<Detector>();
        names_agree::<Action>();
        names_agree::<Scope>();
        names_agree::<Mode>();
        names_agree::<Outcome>();
        names_agree::<Effect>();
        names_agree::<IncidentStatus>();
        names_agree::<TimelineKind>();
        names_agree::<RotationStatus>();
        names_agree::<RotationTrigger>();
        names_agree::<AlertKind>();
        names_agree::<DeliveryStatus>();
        names_agree::<crate::store::dashboard::Role>();
        assert_eq!(IncidentStatus::names(), "open, acknowledged, resolved, false_positive");
    }
}
