//! The dashboard in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/browser.sh`) driven over WebDriver with fantoccini.
//! A responder's walk through an attack, attacker-controlled strings staying inert text, and
//! the screenshots under `docs/screenshots/` that the README shows (rewritten only when
//! `VIGIL_SCREENSHOTS=1`, so an ordinary run leaves the tracked files alone).
//!
//! Every wait polls with a deadline; nothing sleeps in place of an assertion.

use crate::web::*;
use chrono::Duration as Minutes;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vigil_test_support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// A laptop screen.
const WIDTH: u32 = 1440;
const HEIGHT: u32 = 900;

/// A chromedriver on a free loopback port, a Chromium session with a fresh profile; both end
/// when this is dropped (the driver is killed, the profile removed).
struct Browser {
    client: Client,
    _driver: tokio::process::Child,
    profile: PathBuf,
}

impl Drop for Browser {
    /// A test that panicked never closed its session, and chromedriver dying does not take
    /// Chromium with it: stop every process of this browser's own profile.
    fn drop(&mut self) {
        let _ = std::process::Command::new("pkill")
            .args(["-f", "--"])
            .arg(format!("--user-data-dir={}", self.profile.display()))
            .status();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn start_browser() -> Browser {
    for binary in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            std::path::Path::new(binary).exists(),
            "{binary} is missing: run scripts/browser.sh (apt-get install chromium chromium-driver)"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("{url}/status")).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not answer on {url} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let profile = std::env::temp_dir().join(format!("vigil-chromium-{}", uuid::Uuid::new_v4().simple()));
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
        "--metrics-recording-only",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        &format!("--window-size={WIDTH},{HEIGHT}"),
        &format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = json!({
        "browserName": "chrome",
        // An alert left open must be seen by the test, not dismissed for it.
        "unhandledPromptBehavior": "ignore",
        "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
    });
    let client = ClientBuilder::rustls()
        .expect("TLS roots")
        .capabilities(capabilities.as_object().unwrap().clone())
        .connect(&url)
        .await
        .expect("a Chromium session");
    Browser {
        client,
        _driver: driver,
        profile,
    }
}

impl Browser {
    async fn goto(&self, app: &TestApp, path: &str) {
        self.client.goto(&app.url(path)).await.unwrap();
    }

    /// Waits (bounded) for an element.
    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(20))
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let url = self
                    .client
                    .current_url()
                    .await
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                let html = self.client.source().await.unwrap_or_default();
                panic!("no {css} within 20 s ({e}) on {url}:\n{html}")
            }
        }
    }

    async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.client.find_all(Locator::Css(css)).await.unwrap() {
            out.push(e.text().await.unwrap());
        }
        out
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    async fn log_in(&self, app: &TestApp, name: &str) {
        self.goto(app, "/incidents").await;
        self.wait_for("form[action='/login']").await;
        self.client
            .find(Locator::Id("name"))
            .await
            .unwrap()
            .send_keys(name)
            .await
            .unwrap();
        let password = self.client.find(Locator::Id("password")).await.unwrap();
        password.send_keys(PASSWORD).await.unwrap();
        password.send_keys(&Key::Enter).await.unwrap();
        self.wait_for("section#live-region").await;
    }

    /// Writes a screenshot of the whole page (up to a bound) for the README, when asked to
    /// with `VIGIL_SCREENSHOTS=1`.
    async fn screenshot(&self, name: &str) {
        if std::env::var("VIGIL_SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        let sizes = self
            .js("return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]")
            .await;
        let page = sizes[0].as_u64().unwrap_or(HEIGHT as u64).clamp(600, 2400);
        let frame = sizes[1].as_u64().unwrap_or(0).min(400);
        self.client.set_window_size(WIDTH, (page + frame) as u32).await.unwrap();
        let png = self.client.screenshot().await.unwrap();
        self.client.set_window_size(WIDTH, HEIGHT).await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Nothing an agent sent ran: no dialog opened, no script set the marker, and the DOM holds
    /// no element or attribute that could run script.
    async fn assert_inert(&self, page: &str) {
        match self.client.get_alert_text().await {
            Err(e) if e.is_no_such_alert() => {}
            other => panic!("{page}: a dialog is open: {other:?}"),
        }
        assert_eq!(
            self.js("return typeof window.__xss").await,
            "undefined",
            "{page}: script ran"
        );
        let live = self
            .js(
                "return {
                   handlers: Array.from(document.querySelectorAll('*')).flatMap(e =>
                       Array.from(e.attributes).filter(a => a.name.startsWith('on')).map(a => e.tagName + ' ' + a.name)),
                   scripts: Array.from(document.scripts).map(s => s.getAttribute('src') || 'inline'),
                   urls: Array.from(document.querySelectorAll('[href],[src],[action],[formaction]')).map(e =>
                       e.getAttribute('href') || e.getAttribute('src') || e.getAttribute('action') || e.getAttribute('formaction'))
                       .filter(u => /^\\s*javascript:/i.test(u)),
                   embedded: document.querySelectorAll('iframe, img, object, embed, b').length,
                 }",
            )
            .await;
        assert_eq!(live["handlers"], json!([]), "{page}: event-handler attributes");
        assert!(
            live["scripts"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s == "/static/live.js"),
            "{page}: only our own script: {}",
            live["scripts"]
        );
        assert_eq!(live["urls"], json!([]), "{page}: javascript: URLs");
        assert_eq!(live["embedded"], 0, "{page}: elements made from agent markup");
    }
}

/// Two tenants with an hour and a half of normal traffic, before acme's agent bursts through
/// `github.list_issues`: returns acme's id, its ingest token, its secret's path, and globex's
/// ingest token.
async fn normal_traffic(app: &TestApp) -> (String, String, String, String) {
    let acme = unique_tenant("acme");
    let globex = unique_tenant("globex");
    let path = format!("tenants/{acme}/github");
    app.vault.write_kv2(&path, json!({"token": "placeholder"})).await;
    let acme_token = app.create_tenant(&acme).await;
    let globex_token = app.create_tenant(&globex).await;
    app.bind_kv2(&acme, "github.*", &path).await;
    let end = this_minute() - Minutes::minutes(1);
    let mut history = steady_history("a", "github.list_issues", 2, 90, end);
    history.extend(steady_history("b", "github.get_repo", 1, 90, end));
    // Interleaved as a runtime reports them: both tools are part of the tenant's normal.
    history.sort_by(|a, b| a["timestamp"].as_str().cmp(&b["timestamp"].as_str()));
    app.post_history(&acme_token, &history).await;
    app.post_history(&globex_token, &steady_history("g", "db.query", 3, 90, end))
        .await;
    (acme, acme_token, path, globex_token)
}

#[tokio::test]
async fn a_responder_sees_an_attack_arrive_opens_it_and_acknowledges_it_with_a_note() {
    let app = spawn_app().await;
    let (acme, acme_token, path, globex_token) = normal_traffic(&app).await;
    add_user(&app, "ada", "responder").await;
    // Earlier today: a leaked key at another tenant, already resolved, and one at a tenant
    // still learning (alerted on, not rotated).
    let earlier = app
        .leak_a_key(&globex_token, "leak-1", "slack.post_message", json!({}))
        .await;
    let web = Web::login(&app, "ada").await;
    let r = web
        .act(&format!("/incidents/{earlier}/acknowledge"), &[("note", "On it.")])
        .await;
    assert_eq!(r.status(), 303);
    let r = web
        .act(
            &format!("/incidents/{earlier}/resolve"),
            &[("note", "Key revoked at the source.")],
        )
        .await;
    assert_eq!(r.status(), 303);
    let initech = unique_tenant("initech");
    let initech_token = app.create_tenant(&initech).await;
    app.leak_a_key(&initech_token, "leak-1", "jira.create_ticket", json!({}))
        .await;

    let browser = start_browser().await;
    browser.log_in(&app, "ada").await;
    assert_eq!(
        browser.texts("tr.incident").await.len(),
        2,
        "two incidents before the attack"
    );

    let before = app.vault.current_version(&path).await;
    let burst = burst("github.list_issues", |i| json!({"repo": "web", "page": i}));
    let body = app.post_accepted(&acme_token, &burst).await;
    let incident = body["findings"][0]["incident_id"].as_str().unwrap().to_owned();

    // The list refreshes itself: the incident appears without a reload.
    let row = browser
        .wait_for(&format!("tr.incident a[href='/incidents/{incident}']"))
        .await;
    assert!(row.text().await.unwrap().contains("github.list_issues"));
    assert_eq!(browser.texts("#live-status").await, ["1 new incident"]);
    let rotations = app.settled_rotations(&acme).await;
    assert_eq!(rotations[0]["status"], "succeeded");
    browser.screenshot("incidents").await;

    row.click().await.unwrap();
    browser.wait_for("h1.incident-title").await;
    assert_eq!(browser.texts("#incident-status").await, ["OPEN"]);
    assert!(browser.texts(".sentence").await[0].contains("1 rotation requested, 1 succeeded, 0 failed"));
    // The story first: opened, the burst's first and last findings, the rotation, the alert.
    let timeline = browser.texts("ol.incident-timeline li").await.join("\n");
    for expected in [
        "incident opened for tenant",
        "first rate_spike on github.list_issues",
        "first param_out_of_range on github.list_issues params.page",
        "1 rotation requested",
        "1 rotation succeeded",
    ] {
        assert!(timeline.contains(expected), "{expected} in {timeline}");
    }
    // The burst's out-of-range pages are one row: how many, first to last, the range of pages.
    let groups = browser.texts("tr.group").await;
    let pages = groups
        .iter()
        .find(|g| g.contains("param_out_of_range") && g.contains("params.page"))
        .unwrap_or_else(|| panic!("a params.page row in {groups:#?}"));
    let count: i64 = browser.texts("tr.group:has(code.subject) td.group-count").await[0]
        .parse()
        .unwrap();
    assert!(count > 10, "the repeated findings are one row of {count}: {pages}");
    let range = browser.texts("tr.group:has(code.subject) td.group-range").await[0].clone();
    let bounds: Vec<f64> = range.split(" – ").filter_map(|b| b.trim().parse().ok()).collect();
    assert!(
        bounds.len() == 2 && bounds[0] < bounds[1] && bounds[1] <= 59.0,
        "the observed pages {range}"
    );
    assert!(pages.contains("ASI02 Tool Misuse and Exploitation"), "{pages}");
    assert!(pages.contains("AML.T0053 AI Agent Tool Invocation"), "{pages}");
    assert_eq!(groups.len(), 2, "a row per detector, tool and subject: {groups:#?}");
    // Each row opens onto its findings and their numbers.
    assert!(
        browser.texts("li.finding").await.iter().all(String::is_empty),
        "closed at first"
    );
    browser
        .client
        .find(Locator::Css(
            "tr.group:has(code.subject) details.group-findings summary",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let finding = browser.texts("li.finding").await.join("\n");
    for expected in ["Observed", "Expected", "Threshold", "p-value", "Confidence"] {
        assert!(finding.contains(expected), "{expected} in {finding}");
    }
    assert!(
        !browser.texts("article.event").await.is_empty(),
        "the evidence events are shown"
    );
    let rotation = browser.texts("tr.rotation").await.join("\n");
    for expected in [
        "SUCCEEDED",
        "vault",
        &format!("kv2 secret/{path}"),
        &format!("new_version: {}", before + 1),
    ] {
        assert!(rotation.contains(expected), "{expected} in {rotation}");
    }

    // Keyboard only: type the note, Tab to the button, Enter.
    let note = browser.client.find(Locator::Id("note-acknowledge")).await.unwrap();
    note.send_keys("Paging the acme on-call; key already rotated.")
        .await
        .unwrap();
    note.send_keys(&Key::Tab).await.unwrap();
    let focused = browser.client.active_element().await.unwrap();
    assert_eq!(focused.text().await.unwrap(), "Acknowledge");
    focused.send_keys(&Key::Enter).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while browser.texts("#incident-status").await != ["ACKNOWLEDGED"] {
        assert!(Instant::now() < deadline, "the incident did not show acknowledged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(browser.texts("ol.activity").await[0].contains("Paging the acme on-call"));
    browser.screenshot("incident").await;

    browser.goto(&app, &format!("/tenants/{acme}")).await;
    browser.wait_for("#baseline-state").await;
    assert_eq!(browser.texts("#baseline-state").await, ["ACTIVE"]);
    let tools = browser.texts("table.tools code.tool").await;
    assert_eq!(tools, ["github.get_repo", "github.list_issues"]);
    assert_eq!(
        browser
            .client
            .find_all(Locator::Css("figure.chart svg"))
            .await
            .unwrap()
            .len(),
        2,
        "one rate chart per tool"
    );
    assert!(
        !browser
            .client
            .find_all(Locator::Css("figure.chart circle.over"))
            .await
            .unwrap()
            .is_empty(),
        "the burst stands out against the band"
    );
    browser.screenshot("baseline").await;

    browser.goto(&app, "/audit").await;
    let entry = browser.wait_for("tr.audit-entry").await;
    let text = entry.text().await.unwrap();
    for expected in ["user:ada", "incident.acknowledge", "Paging the acme on-call", &incident] {
        assert!(text.contains(expected), "{expected} in the newest audit entry: {text}");
    }
    browser.client.clone().close().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn strings_from_agents_render_as_inert_text_on_every_page() {
    let app = spawn_app().await;
    let (tenant, incident) = hostile_incident(&app).await;
    let rotations = app.settled_rotations(&tenant).await;
    assert!(rotations.iter().any(|r| r["tools"] == BINDING_GLOB), "{rotations:#?}");
    let summary = app.admin_json(&format!("/v1/incidents/{incident}")).await["summary"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        summary.contains("svg onload"),
        "the summary carries the hostile key: {summary}"
    );
    add_user(&app, "xavier", "responder").await;
    let browser = start_browser().await;
    browser.log_in(&app, "xavier").await;

    // The list.
    browser.assert_inert("/incidents").await;
    assert!(browser.texts("a.summary").await.contains(&summary));

    // The incident: findings, evidence, rotation; then a note that is itself markup.
    browser.goto(&app, &format!("/incidents/{incident}")).await;
    browser.wait_for("h1.incident-title").await;
    browser.assert_inert("incident").await;
    let tools = browser.texts("code.tool").await;
    for payload in [TOOL_SCRIPT, TOOL_HANDLER, TOOL_URL] {
        assert!(tools.iter().any(|t| t == payload), "{payload} as text among {tools:?}");
    }
    assert_eq!(browser.texts("h1 .summary").await, [summary.as_str()]);
    assert!(browser.texts("dd.agent").await.iter().all(|a| a == AGENT));
    assert!(browser.texts(".error-code").await.iter().all(|a| a == AGENT));
    assert!(browser.texts("dd.credential").await.iter().all(|a| a == TOOL_URL));
    let params = browser.texts("pre.params").await;
    assert_eq!(params.len(), 3);
    for p in &params {
        let shown: Value = serde_json::from_str(p).expect("the parameters are shown as JSON text");
        assert_eq!(shown["q"], PARAM_VALUE);
        assert_eq!(shown["next"], TOOL_URL);
        assert!(shown[PARAM_KEY].as_str().unwrap().starts_with("[REDACTED:"), "{shown}");
    }
    assert!(browser.texts("code.tools").await.iter().all(|t| t == BINDING_GLOB));
    let note = browser.client.find(Locator::Id("note-acknowledge")).await.unwrap();
    note.send_keys(TOOL_HANDLER).await.unwrap();
    browser
        .client
        .find(Locator::Css("form[action$='/acknowledge'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while browser.texts("q.note").await != [TOOL_HANDLER] {
        assert!(Instant::now() < deadline, "the note did not show as text");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.assert_inert("incident after the note").await;

    browser.goto(&app, "/rotations").await;
    browser.wait_for("tr.rotation").await;
    browser.assert_inert("/rotations").await;
    assert!(browser.texts("code.tools").await.iter().any(|t| t == BINDING_GLOB));

    browser.goto(&app, &format!("/tenants/{tenant}")).await;
    browser.wait_for("table.tools").await;
    browser.assert_inert("tenant").await;
    let tools = browser.texts("table.tools code.tool").await;
    for payload in [TOOL_SCRIPT, TOOL_HANDLER, TOOL_URL] {
        assert!(
            tools.iter().any(|t| t == payload),
            "{payload} in the tool map {tools:?}"
        );
    }
    let captions = browser.texts("figure.chart figcaption code.tool").await;
    assert!(captions.iter().any(|t| t == TOOL_SCRIPT), "{captions:?}");
    // Learned parameters: the hostile key is a path, the hostile values a value set.
    let paths = browser.texts("code.param").await;
    assert!(
        paths.iter().any(|p| p == PARAM_KEY),
        "{PARAM_KEY} among the paths {paths:?}"
    );
    let values = browser.texts("td.param-values").await;
    assert!(
        values.iter().any(|v| v.contains(PARAM_VALUE)) && values.iter().any(|v| v.contains(TOOL_URL)),
        "the hostile values as text among {values:?}"
    );

    browser.goto(&app, "/audit").await;
    browser.wait_for("tr.audit-entry").await;
    browser.assert_inert("/audit").await;
    assert_eq!(browser.texts("q.note").await, [TOOL_HANDLER]);
    browser.client.clone().close().await.unwrap();
    app.stop().await;
}
