//! A person at the dashboard, over plain HTTP: logs in with the login form, keeps the session
//! cookie, reads pages and sends forms. Redirects are not followed, so tests see them.

use chrono::Utc;
use regex::Regex;
use serde_json::json;
use vigil_test_support::*;

pub const PASSWORD: &str = "correct horse battery staple";

/// Adds a dashboard user as `vigil user add` does.
pub async fn add_user(app: &TestApp, name: &str, role: &str) {
    let role = vigil::dashboard::users::Role::parse(role).expect("a role");
    vigil::dashboard::users::add(&app.pool, name, role, PASSWORD)
        .await
        .expect("add user");
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `application/x-www-form-urlencoded`, as a browser encodes a form.
pub fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of `name` in a response's Set-Cookie headers.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned()
}

/// The CSRF token of the first form in a page.
pub fn csrf_of(html: &str) -> String {
    Regex::new(r#"name="csrf" value="([0-9a-f]*)""#)
        .unwrap()
        .captures(html)
        .unwrap_or_else(|| panic!("no csrf field in:\n{html}"))[1]
        .to_owned()
}

pub struct Web {
    base: String,
    client: reqwest::Client,
    /// `Cookie:` header value, empty when logged out.
    pub cookie: String,
    /// The session's CSRF token, read from a page.
    pub csrf: String,
}

impl Web {
    pub fn anonymous(app: &TestApp) -> Web {
        Web {
            base: app.address.clone(),
            client: client(),
            cookie: String::new(),
            csrf: String::new(),
        }
    }

    /// Sends the login form as a browser would (with the login page's token) and returns the
    /// response, without following it.
    pub async fn submit_login(app: &TestApp, name: &str, password: &str) -> reqwest::Response {
        Self::submit_login_forwarded(app, name, password, &[]).await
    }

    /// [`Web::submit_login`] through a proxy that sent these `X-Forwarded-For` headers.
    pub async fn submit_login_forwarded(
        app: &TestApp,
        name: &str,
        password: &str,
        forwarded_for: &[&str],
    ) -> reqwest::Response {
        let client = client();
        let page = client.get(app.url("/login")).send().await.unwrap();
        let login_cookie = cookie_value(&set_cookie(&page, "vigil_login").expect("the login page sets its token"));
        let csrf = csrf_of(&page.text().await.unwrap());
        let mut request = client.post(app.url("/login"));
        for hop in forwarded_for {
            request = request.header("x-forwarded-for", *hop);
        }
        request
            .header("cookie", format!("vigil_login={login_cookie}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[("csrf", &csrf), ("name", name), ("password", password)]))
            .send()
            .await
            .unwrap()
    }

    pub async fn login(app: &TestApp, name: &str) -> Web {
        let response = Self::submit_login(app, name, PASSWORD).await;
        assert_eq!(response.status(), 303, "login of {name}");
        let session = cookie_value(&set_cookie(&response, "vigil_session").expect("a session cookie"));
        let mut web = Web {
            base: app.address.clone(),
            client: client(),
            cookie: format!("vigil_session={session}"),
            csrf: String::new(),
        };
        web.csrf = csrf_of(&web.page("/incidents").await);
        web
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }

    /// A page that must render: its HTML.
    pub async fn page(&self, path: &str) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.text().await.unwrap()
    }

    /// Sends a form exactly as given: tests decide whether it carries the CSRF token.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(fields))
            .send()
            .await
            .unwrap()
    }

    /// A form with this session's CSRF token.
    pub async fn act(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(path, &all).await
    }
}

/// Markup an attacker-controlled agent might send, one per way a page could turn it live.
pub const TOOL_SCRIPT: &str = "<script>window.__xss=1;alert(1)</script>";
pub const TOOL_HANDLER: &str = "<img src=x onerror=\"window.__xss=2;alert(2)\">";
pub const TOOL_URL: &str = "javascript:window.__xss=3;alert(3)";
/// A parameter key: it ends up in the finding's explanation and so in the incident summary.
pub const PARAM_KEY: &str = "<svg onload=\"window.__xss=4\">";
pub const PARAM_VALUE: &str = "\"><b onmouseover=\"window.__xss=5\">hover</b>";
pub const AGENT: &str = "<iframe src=\"javascript:window.__xss=6\"></iframe>";
/// A binding glob (admin-written, but shown on the same pages) that matches `TOOL_HANDLER`.
pub const BINDING_GLOB: &str = "<img src=x onerror=\"window.__xss=2;alert(2)\">*";

/// An incident whose findings, evidence and rotation carry the payloads above: a warmed-up
/// tenant whose agent leaks keys through tools named like markup. Returns (tenant, incident).
pub async fn hostile_incident(app: &TestApp) -> (String, String) {
    let tenant = unique_tenant("xss");
    let (token, path) = app.warmed_up_tenant(&app.vault, &tenant, "*").await;
    app.bind_kv2(&tenant, BINDING_GLOB, &path).await;
    let mut incident = String::new();
    for (i, tool) in [TOOL_SCRIPT, TOOL_HANDLER, TOOL_URL].into_iter().enumerate() {
        let events = [
            json!({"event_id": format!("x-{i}"), "timestamp": Utc::now().to_rfc3339(), "tool": tool,
            "outcome": "error", "error_code": AGENT, "agent_id": AGENT, "session_id": PARAM_VALUE,
            "credential_ref": TOOL_URL,
            "params": {PARAM_KEY: "AKIAIOSFODNN7EXAMPLE", "q": PARAM_VALUE, "next": TOOL_URL}}),
        ];
        let body = app.post_accepted(&token, &events).await;
        incident = body["findings"][0]["incident_id"]
            .as_str()
            .expect("an incident")
            .to_owned();
    }
    (tenant, incident)
}
