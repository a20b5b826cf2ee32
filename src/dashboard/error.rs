//! How a dashboard request fails: an HTML page with the status and a sentence a person can act
//! on. Internal failures are logged once, here, and shown without detail.

use super::{Layout, render};
use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

#[derive(Debug)]
pub enum PageError {
    /// 303 to the login page, then back to this path: a page asked for without a session.
    LoginRequired(String),
    /// 401: a form sent without a live session.
    Unauthorized,
    /// 403: a missing or stale CSRF token, a foreign origin, or a role that may not act.
    Forbidden(&'static str),
    /// 404.
    NotFound(&'static str),
    /// 409: the thing's state does not allow it (an illegal transition, retrying a success).
    Conflict(String),
    /// 422: a field breaks a rule; the message names it.
    Invalid(String),
    /// 500: logged where it is made, answered without detail.
    Internal,
}

impl PageError {
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "Dashboard request failed");
        PageError::Internal
    }

    fn status(&self) -> StatusCode {
        match self {
            PageError::LoginRequired(_) => StatusCode::SEE_OTHER,
            PageError::Unauthorized => StatusCode::UNAUTHORIZED,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::Conflict(_) => StatusCode::CONFLICT,
            PageError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            PageError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

impl From<anyhow::Error> for PageError {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(format!("{e:#}"))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    title: &'static str,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (title, message) = match self {
            PageError::LoginRequired(next) => {
                let target = format!("/login?next={}", percent_encode(&next));
                return Redirect::to(&target).into_response();
            }
            PageError::Unauthorized => ("Not logged in", "Log in to continue.".to_owned()),
            PageError::Forbidden(why) => ("Not allowed", why.to_owned()),
            PageError::NotFound(what) => ("Not found", format!("No such {what}.")),
            PageError::Conflict(why) => ("Not possible now", why),
            PageError::Invalid(why) => ("Check the form", why),
            PageError::Internal => (
                "Something went wrong",
                "The request failed on our side; it has been logged. Try again.".to_owned(),
            ),
        };
        let page = ErrorPage {
            layout: Layout {
                user: None,
                csrf: String::new(),
                nav: "",
            },
            status: status.as_u16(),
            title,
            message,
        };
        (status, render(&page)).into_response()
    }
}

/// Percent-encodes everything but unreserved characters and `/`, for a query value.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_paths_readable_and_escapes_the_rest() {
        assert_eq!(
            percent_encode("/incidents?status=open&x=a b"),
            "/incidents%3Fstatus%3Dopen%26x%3Da%20b"
        );
        assert_eq!(percent_encode("é"), "%C3%A9");
    }
}
