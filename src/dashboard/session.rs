//! Logging in and out, session cookies, and the extractors every dashboard handler takes:
//! [`Session`] for pages, [`Act`] and [`Signed`] for forms (CSRF token and, for `Act`, a role
//! that may act). A handler cannot forget a check that its argument type performs.
//!
//! The cookie holds 256 random bits; Postgres holds only their SHA-256, so reading the sessions
//! table does not hand out live sessions. Cookies are `HttpOnly; SameSite=Strict` (and `Secure`
//! when `VIGIL_COOKIE_SECURE` says Vigil is reached over TLS).

use super::error::PageError;
use super::users::{self, Role};
use super::{Layout, render};
use crate::http::AppState;
use crate::http::auth::{COOKIE, IDLE_MINUTES, cookie, current, hash_token, same, same_origin};
use crate::store;
use crate::store::audit::{Actor, NewEntry};
use askama::Template;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, RequestPartsExt};
use ipnet::IpNet;
use rand::RngCore;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

pub use crate::http::auth::Session;

/// Double-submit token of the login form, which is shown before any session exists.
const LOGIN_COOKIE: &str = "vigil_login";
/// A session ends this long after login, whatever the activity.
pub const LIFETIME_MINUTES: i64 = 12 * 60;
/// Failed logins of one (name, client address) pair that cost nothing; each one after that
/// doubles the wait before the pair may try again, from a minute up to an hour. Throttling the
/// pair, never the name or the address alone, means nobody can lock a responder out from
/// another address, nor everyone else out from theirs.
const FREE_FAILURES: i64 = 5;
const FIRST_WAIT_SECS: f64 = 60.0;
const MAX_WAIT_SECS: f64 = 3600.0;

impl Session {
    pub fn layout(&self, nav: &'static str) -> Layout {
        Layout {
            user: Some((self.name.clone(), self.role.as_str())),
            csrf: self.csrf.clone(),
            nav,
        }
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn set_cookie(app: &AppState, name: &str, value: &str, path: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if app.config.cookie_secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .expect("cookie values are hex")
}

impl FromRequestParts<AppState> for Session {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, PageError> {
        match current(app, &parts.headers).await? {
            Some(session) => Ok(session),
            None if parts.method == Method::GET || parts.method == Method::HEAD => {
                let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                Err(PageError::LoginRequired(next.to_owned()))
            }
            None => Err(PageError::Unauthorized),
        }
    }
}

/// A form's fields with the CSRF token every dashboard form carries.
#[derive(Deserialize)]
struct WithCsrf<T> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    form: T,
}

async fn signed_form<T: DeserializeOwned>(
    req: Request,
    app: &AppState,
    min_role: Role,
) -> Result<(Session, T), PageError> {
    let (mut parts, body) = req.into_parts();
    let session = parts.extract_with_state::<Session, _>(app).await?;
    if !same_origin(&parts.headers) {
        return Err(PageError::Forbidden("This form was sent from another site."));
    }
    let Form(WithCsrf { csrf, form }) = Form::<WithCsrf<T>>::from_request(Request::from_parts(parts, body), app)
        .await
        .map_err(|e| PageError::Invalid(format!("The form could not be read: {}", e.body_text())))?;
    if !same(csrf.as_bytes(), session.csrf.as_bytes()) {
        return Err(PageError::Forbidden(
            "The form's security token is missing or stale. Reload the page and try again.",
        ));
    }
    if session.role < min_role {
        return Err(PageError::Forbidden("Your role may view but not act."));
    }
    Ok((session, form))
}

/// A form that changes something: a live session whose role may act, a matching CSRF token.
pub struct Act<T> {
    pub session: Session,
    pub form: T,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for Act<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, PageError> {
        let (session, form) = signed_form(req, app, Role::Responder).await?;
        Ok(Act { session, form })
    }
}

/// A form without fields any logged-in person may send (logging out), CSRF token checked.
pub struct Signed {
    pub session: Session,
}

impl FromRequest<AppState> for Signed {
    type Rejection = PageError;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, PageError> {
        let (session, NoFields {}) = signed_form(req, app, Role::Viewer).await?;
        Ok(Signed { session })
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    next: String,
    name: String,
    message: Option<String>,
}

/// Where to go after logging in: a path on this site only, so `next` cannot send a person
/// elsewhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.len() <= 512
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
                && !n.starts_with("/login") =>
        {
            n.to_owned()
        }
        _ => "/incidents".to_owned(),
    }
}

/// The login page with a fresh login-form token (in a cookie and in the form).
fn login_page(app: &AppState, status: StatusCode, next: &str, name: &str, message: Option<String>) -> Response {
    let token = random_token();
    let page = LoginPage {
        layout: Layout {
            user: None,
            csrf: token.clone(),
            nav: "login",
        },
        next: next.to_owned(),
        name: name.to_owned(),
        message,
    };
    let mut response = (status, render(&page)).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(app, LOGIN_COOKIE, &token, "/login", 3600),
    );
    response
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `GET /login`.
pub async fn login_form(State(app): State<AppState>, Query(q): Query<NextQuery>) -> Response {
    login_page(&app, StatusCode::OK, &safe_next(q.next.as_deref()), "", None)
}

/// A real hash of a random password, verified when the name is unknown, so a failed login
/// takes as long whether or not the name exists.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| users::hash_password(&random_token()).expect("hashing a random password"))
}

/// Seconds a (name, client) pair must still wait before it may try to log in again, given its
/// failures since its last success and the seconds since the last of them; `None`: it may.
fn login_wait(failures: i64, secs_since_last: f64) -> Option<u64> {
    if failures < FREE_FAILURES {
        return None;
    }
    let doublings = (failures - FREE_FAILURES).min(16) as i32;
    let wait = (FIRST_WAIT_SECS * 2f64.powi(doublings)).min(MAX_WAIT_SECS);
    let left = wait - secs_since_last;
    (left > 0.0).then(|| left.ceil() as u64)
}

/// The address a request comes from: the connection's peer, unless that is a trusted proxy;
/// then the right-most `X-Forwarded-For` hop that is not one (hops to its right were added by
/// our proxies; anything to its left, the client may have written).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        if !is_trusted(&client) {
            break;
        }
        match hop.trim().parse() {
            Ok(ip) => client = ip,
            Err(_) => break,
        }
    }
    client
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

/// `POST /login`: throttled per (name, client address) with a growing wait; the same answer
/// for an unknown name and a wrong password, in about the same time.
pub async fn login(State(app): State<AppState>, headers: HeaderMap, request: Request) -> Result<Response, PageError> {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| client_address(c.0.ip(), &headers, &app.config.trusted_proxies).to_string())
        .unwrap_or_else(|| "unknown".to_owned());
    let Form(form) = Form::<LoginForm>::from_request(request, &app)
        .await
        .map_err(|e| PageError::Invalid(format!("The form could not be read: {}", e.body_text())))?;
    let next = safe_next(form.next.as_deref());
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same(expected.as_bytes(), form.csrf.as_bytes()) || !same_origin(&headers) {
        let message = "The login form expired. Please log in again.".to_owned();
        return Ok(login_page(&app, StatusCode::FORBIDDEN, &next, "", Some(message)));
    }
    let name: String = form.name.trim().chars().take(64).collect();
    let (failures, secs_since_last) = store::dashboard::login_failures(&app.pool, &name, &client).await?;
    if let Some(wait) = login_wait(failures, secs_since_last.unwrap_or(f64::MAX)) {
        tracing::warn!(client = %client, "Login refused: too many failed attempts");
        let minutes = wait.div_ceil(60);
        let message = format!(
            "Too many failed logins. Try again in {minutes} minute{}.",
            if minutes == 1 { "" } else { "s" }
        );
        let mut page = login_page(&app, StatusCode::TOO_MANY_REQUESTS, &next, &name, Some(message));
        page.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return Ok(page);
    }

    let user = if users::valid_name(&name) {
        store::dashboard::user_by_name(&app.pool, &name).await?
    } else {
        None
    };
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_owned());
    let password = form.password;
    let verified = tokio::task::spawn_blocking(move || users::verify_password(&password, &hash))
        .await
        .map_err(PageError::internal)?;
    let user = match user {
        Some(user) if verified => user,
        _ => {
            store::dashboard::record_login_attempt(&app.pool, &name, &client, false).await?;
            let message = "Wrong name or password.".to_owned();
            return Ok(login_page(&app, StatusCode::UNAUTHORIZED, &next, &name, Some(message)));
        }
    };

    store::dashboard::record_login_attempt(&app.pool, &name, &client, true).await?;
    store::dashboard::prune_sessions(&app.pool, IDLE_MINUTES).await?;
    let token = random_token();
    store::dashboard::create_session(
        &app.pool,
        &hash_token(&token),
        &user.user_id,
        &random_token(),
        LIFETIME_MINUTES,
    )
    .await?;
    store::audit::record(
        &app.pool,
        NewEntry {
            actor: &Actor::User(user.name.clone()),
            action: "login",
            tenant_id: None,
            target: Some(&user.user_id),
            details: serde_json::json!({ "client": client }),
        },
    )
    .await?;
    let mut response = Redirect::to(&next).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(&app, COOKIE, &token, "/", LIFETIME_MINUTES * 60),
    );
    headers.append(header::SET_COOKIE, set_cookie(&app, LOGIN_COOKIE, "", "/login", 0));
    Ok(response)
}

#[derive(Deserialize)]
pub struct NoFields {}

/// `POST /logout`: ends the session here and in the browser.
pub async fn logout(
    State(app): State<AppState>,
    headers: HeaderMap,
    Signed { session }: Signed,
) -> Result<Response, PageError> {
    if let Some(token) = cookie(&headers, COOKIE) {
        store::dashboard::delete_session(&app.pool, &hash_token(token)).await?;
    }
    store::audit::record(
        &app.pool,
        NewEntry {
            actor: &Actor::User(session.name.clone()),
            action: "logout",
            tenant_id: None,
            target: Some(&session.name),
            details: serde_json::json!({}),
        },
    )
    .await?;
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(&app, COOKIE, "", "/", 0));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/incidents/inc_1?x=1")), "/incidents/inc_1?x=1");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "javascript:alert(1)",
            "/login",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/incidents", "{bad}");
        }
        assert_eq!(safe_next(None), "/incidents");
    }

    #[test]
    fn the_wait_doubles_after_five_failures_up_to_an_hour() {
        assert_eq!(login_wait(4, 0.0), None);
        assert_eq!(login_wait(5, 0.0), Some(60));
        assert_eq!(login_wait(5, 59.5), Some(1));
        assert_eq!(login_wait(5, 60.0), None);
        assert_eq!(login_wait(6, 0.0), Some(120));
        assert_eq!(login_wait(8, 100.0), Some(380));
        assert_eq!(login_wait(12, 0.0), Some(3600));
        assert_eq!(login_wait(1_000_000, 3599.0), Some(1));
    }

    #[track_caller]
    fn check_client(peer: &str, forwarded: &[&str], trusted: &[&str], expect: &str) {
        let mut headers = HeaderMap::new();
        for f in forwarded {
            headers.append("x-forwarded-for", HeaderValue::from_str(f).unwrap());
        }
        let trusted: Vec<IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        let got = client_address(peer.parse().unwrap(), &headers, &trusted);
        assert_eq!(got.to_string(), expect);
    }

    #[test]
    fn the_client_is_the_right_most_hop_no_trusted_proxy_added() {
        // No trusted proxies: the header is the client's own word, ignored.
        check_client("203.0.113.9", &["198.51.100.1"], &[], "203.0.113.9");
        // The peer is not a trusted proxy: ignored too.
        check_client("203.0.113.9", &["198.51.100.1"], &["10.0.0.0/8"], "203.0.113.9");
        check_client("10.0.0.2", &["198.51.100.1"], &["10.0.0.0/8"], "198.51.100.1");
        // A forged hop on the left does not move the client.
        check_client("10.0.0.2", &["1.2.3.4, 198.51.100.1"], &["10.0.0.0/8"], "198.51.100.1");
        // Trusted hops are skipped, across several headers.
        check_client(
            "10.0.0.2",
            &["198.51.100.1, 10.1.1.1", "10.0.0.3"],
            &["10.0.0.0/8"],
            "198.51.100.1",
        );
        check_client("::1", &["2001:db8::7"], &["::1/128"], "2001:db8::7");
        // Garbage stops the walk at the last proxy, which then stands for its clients.
        check_client("10.0.0.2", &["198.51.100.1, junk"], &["10.0.0.0/8"], "10.0.0.2");
        check_client("10.0.0.2", &[], &["10.0.0.0/8"], "10.0.0.2");
    }
}
