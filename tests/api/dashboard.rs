//! The dashboard over plain HTTP: who may see and do what, sessions and CSRF, incident
//! transitions, retries and manual rotations, and escaping. The browser tests
//! (`browser.rs`) cover what only a real browser can show.

use crate::web::*;
use serde_json::{Value, json};
use vigil_test_support::*;

/// A tenant past warm-up with one incident, a leaked key (`leak-1`), whose rotation has settled.
struct Leaked {
    tenant: String,
    token: String,
    incident: String,
    rotation: String,
}

async fn leaked(app: &TestApp, prefix: &str) -> Leaked {
    let tenant = unique_tenant(prefix);
    let (token, _) = app.warmed_up_tenant(&app.vault, &tenant, "*").await;
    let incident = app.leak_a_key(&token, "leak-1", "s3.get", json!({})).await;
    let rotation = app.settled_rotations(&tenant).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    Leaked {
        tenant,
        token,
        incident,
        rotation,
    }
}

async fn incident_status(app: &TestApp, incident: &str) -> String {
    app.admin_json(&format!("/v1/incidents/{incident}")).await["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn without_a_session_every_page_redirects_to_login_and_every_action_is_refused() {
    let app = spawn_app().await;
    let Leaked {
        tenant,
        incident,
        rotation,
        ..
    } = leaked(&app, "anon").await;
    let anonymous = Web::anonymous(&app);

    for page in [
        "/incidents".to_owned(),
        format!("/incidents/{incident}"),
        "/rotations".to_owned(),
        "/tenants".to_owned(),
        format!("/tenants/{tenant}"),
        "/audit".to_owned(),
    ] {
        let r = anonymous.get(&page).await;
        assert_eq!(r.status(), 303, "GET {page}");
        let location = r.headers()["location"].to_str().unwrap();
        assert!(
            location.starts_with("/login?next=%2F") || location.starts_with("/login?next=/"),
            "{location}"
        );
    }
    assert_eq!(anonymous.get("/").await.status(), 303);
    for (action, fields) in [
        (format!("/incidents/{incident}/acknowledge"), vec![("note", "x")]),
        (format!("/incidents/{incident}/false-positive"), vec![("note", "x")]),
        (format!("/rotations/{rotation}/retry"), vec![]),
        (format!("/tenants/{tenant}/rotate"), vec![("reason", "x")]),
        ("/logout".to_owned(), vec![]),
    ] {
        let r = anonymous.post(&action, &fields).await;
        assert_eq!(r.status(), 401, "POST {action}");
    }
    let mut forged = Web::anonymous(&app);
    forged.cookie = format!("vigil_session={}", "ab".repeat(32));
    assert_eq!(
        forged.get("/incidents").await.status(),
        303,
        "an unknown session is none"
    );
    assert_eq!(incident_status(&app, &incident).await, "open");
    assert_eq!(
        app.settled_rotations(&tenant).await.len(),
        1,
        "nothing was retried or rotated"
    );
    let r = anonymous.get("/v1/incidents").await;
    assert_eq!(r.status(), 401, "the API needs a token or a session");
    app.stop().await;
}

#[tokio::test]
async fn a_viewer_sees_no_buttons_and_every_post_of_theirs_is_refused() {
    let app = spawn_app().await;
    let Leaked {
        tenant,
        incident,
        rotation,
        ..
    } = leaked(&app, "view").await;
    add_user(&app, "vera", "viewer").await;
    let viewer = Web::login(&app, "vera").await;

    let page = viewer.page(&format!("/incidents/{incident}")).await;
    assert!(page.contains("s3.get"), "a viewer reads the incident");
    assert!(
        page.contains("stored copy replaced — the issued credential may still be valid until revoked at its issuer")
            && page.contains("only had the stored copy replaced"),
        "the page says what a kv2 rotation did not do"
    );
    for button in ["Acknowledge", "Resolve", "Mark false positive", "Rotate now", "Retry"] {
        assert!(
            !page.contains(&format!(">{button}</button>")),
            "no {button} button for a viewer"
        );
    }
    let tenant_page = viewer.page(&format!("/tenants/{tenant}")).await;
    assert!(!tenant_page.contains("Rotate now"));

    for (action, fields) in [
        (format!("/incidents/{incident}/acknowledge"), vec![("note", "seen")]),
        (format!("/incidents/{incident}/resolve"), vec![]),
        (
            format!("/incidents/{incident}/false-positive"),
            vec![("note", "benign")],
        ),
        (format!("/rotations/{rotation}/retry"), vec![]),
        (format!("/tenants/{tenant}/rotate"), vec![("reason", "drill")]),
    ] {
        let r = viewer.act(&action, &fields).await;
        assert_eq!(r.status(), 403, "POST {action} by a viewer, with a valid token");
    }
    assert_eq!(incident_status(&app, &incident).await, "open");
    assert_eq!(app.settled_rotations(&tenant).await.len(), 1);
    let r = viewer.act("/logout", &[]).await;
    assert_eq!(r.status(), 303, "a viewer may still log out");
    app.stop().await;
}

#[tokio::test]
async fn a_form_without_the_sessions_csrf_token_is_refused() {
    let app = spawn_app().await;
    let Leaked { incident, .. } = leaked(&app, "csrf").await;
    add_user(&app, "rita", "responder").await;
    add_user(&app, "otto", "responder").await;
    let rita = Web::login(&app, "rita").await;
    let otto = Web::login(&app, "otto").await;
    let path = format!("/incidents/{incident}/acknowledge");

    assert_eq!(rita.post(&path, &[("note", "no token")]).await.status(), 403);
    assert_eq!(rita.post(&path, &[("csrf", ""), ("note", "empty")]).await.status(), 403);
    assert_eq!(
        rita.post(&path, &[("csrf", &otto.csrf), ("note", "another session's token")])
            .await
            .status(),
        403
    );
    let cross_site = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(app.url(&path))
        .header("cookie", &rita.cookie)
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("csrf", &rita.csrf), ("note", "from elsewhere")]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        cross_site.status(),
        403,
        "a foreign Origin is refused even with the token"
    );
    assert_eq!(incident_status(&app, &incident).await, "open");

    let r = rita.act(&path, &[("note", "looking")]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], format!("/incidents/{incident}").as_str());
    assert_eq!(incident_status(&app, &incident).await, "acknowledged");
    app.stop().await;
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_logout_ends_the_session() {
    let app = spawn_app().await;
    add_user(&app, "lena", "admin").await;
    let r = Web::submit_login(&app, "lena", PASSWORD).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/incidents");
    let cookie = set_cookie(&r, "vigil_session").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP unless VIGIL_COOKIE_SECURE says TLS"
    );
    let stored: i64 = app.count("select count(*) from sessions").await;
    assert_eq!(stored, 1);
    let token = cookie.split(';').next().unwrap().split_once('=').unwrap().1;
    let raw: i64 = sqlx::query_scalar("select count(*) from sessions where encode(session_hash, 'hex') = $1")
        .bind(token)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(raw, 0, "the database holds the session id's hash, not the id");

    let web = Web::login(&app, "lena").await;
    let api = web.get("/v1/incidents").await;
    assert_eq!(api.status(), 200, "a session reads the admin API");
    let write = reqwest::Client::new()
        .post(app.url("/v1/tenants"))
        .header("cookie", &web.cookie)
        .json(&json!({"id": "sneaky"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        write.status(),
        403,
        "but does not create tenants: that takes the admin token"
    );

    let out = web.act("/logout", &[]).await;
    assert_eq!(out.status(), 303);
    assert!(set_cookie(&out, "vigil_session").unwrap().contains("Max-Age=0"));
    assert_eq!(web.get("/incidents").await.status(), 303, "the old cookie is dead");
    assert_eq!(web.get("/v1/incidents").await.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn failed_logins_say_nothing_about_the_name_and_are_rate_limited() {
    let app = spawn_app().await;
    add_user(&app, "mara", "responder").await;
    let unknown = Web::submit_login(&app, "nobody", PASSWORD).await;
    let wrong = Web::submit_login(&app, "mara", "wrong password!!").await;
    assert_eq!(unknown.status(), 401);
    assert_eq!(wrong.status(), 401);
    assert!(set_cookie(&wrong, "vigil_session").is_none());
    let (unknown, wrong) = (unknown.text().await.unwrap(), wrong.text().await.unwrap());
    assert!(unknown.contains("Wrong name or password.") && wrong.contains("Wrong name or password."));

    for _ in 0..4 {
        assert_eq!(Web::submit_login(&app, "mara", "still wrong!!").await.status(), 401);
    }
    let limited = Web::submit_login(&app, "mara", PASSWORD).await;
    assert_eq!(
        limited.status(),
        429,
        "five failures lock the name, even with the right password"
    );
    assert!(set_cookie(&limited, "vigil_session").is_none());
    assert!(limited.text().await.unwrap().contains("Too many failed logins"));

    let forged = reqwest::Client::new()
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("name", "mara"), ("password", PASSWORD)]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        403,
        "a login without the login form's token is refused"
    );
    app.stop().await;
}

#[tokio::test]
async fn every_page_sends_a_strict_content_security_policy() {
    let app = spawn_app().await;
    add_user(&app, "cora", "viewer").await;
    let web = Web::login(&app, "cora").await;
    for path in [
        "/login",
        "/incidents",
        "/rotations",
        "/tenants",
        "/audit",
        "/static/vigil.css",
    ] {
        let r = web.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {directive} in {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
    }
    let page = web.page("/incidents").await;
    assert!(
        !page.contains("<script>") && !page.contains("style="),
        "no inline script or style"
    );
    app.stop().await;
}

#[tokio::test]
async fn incident_transitions_follow_the_lifecycle_and_each_is_audited_with_its_note() {
    let app = spawn_app().await;
    let Leaked {
        tenant,
        token,
        incident: first,
        ..
    } = leaked(&app, "life").await;
    add_user(&app, "ravi", "responder").await;
    let ravi = Web::login(&app, "ravi").await;
    let path = |action: &str| format!("/incidents/{first}/{action}");

    let r = ravi.act(&path("false-positive"), &[("note", "  ")]).await;
    assert_eq!(r.status(), 422, "a false positive needs a reason");
    assert_eq!(ravi.act(&path("acknowledge"), &[("note", "on it")]).await.status(), 303);
    let again = ravi.act(&path("acknowledge"), &[("note", "twice")]).await;
    assert_eq!(again.status(), 409);
    assert!(again.text().await.unwrap().contains("acknowledged"));
    assert_eq!(
        ravi.act(&path("resolve"), &[("note", "keys rotated")]).await.status(),
        303
    );
    assert_eq!(incident_status(&app, &first).await, "resolved");
    assert_eq!(
        ravi.act(&path("false-positive"), &[("note", "late")]).await.status(),
        409
    );
    assert_eq!(ravi.act(&path("reopen"), &[]).await.status(), 404);

    let page = ravi.page(&format!("/incidents/{first}")).await;
    assert!(
        page.contains("on it") && page.contains("keys rotated"),
        "the notes are on the incident"
    );
    assert!(
        !page.contains(">Acknowledge</button>"),
        "a resolved incident offers no transitions"
    );
    let audit = ravi.page("/audit").await;
    for expected in [
        "user:ravi",
        "incident.acknowledge",
        "incident.resolve",
        "keys rotated",
        "login",
    ] {
        assert!(audit.contains(expected), "{expected} in the audit log");
    }
    assert!(
        !audit.contains("twice"),
        "a refused transition changes nothing and records nothing"
    );

    // Findings after the first incident closed open a second one; false positive from open,
    // suppressing its findings for a day (a bad duration changes nothing).
    let second = app.leak_a_key(&token, "leak-2", "s3.get", json!({})).await;
    assert_ne!(second, first);
    let fp = format!("/incidents/{second}/false-positive");
    let r = ravi
        .act(&fp, &[("note", "test key from the docs"), ("suppress", "a while")])
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(incident_status(&app, &second).await, "open");
    let r = ravi
        .act(&fp, &[("note", "test key from the docs"), ("suppress", "1440")])
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(incident_status(&app, &second).await, "false_positive");
    let baseline = ravi.page(&format!("/tenants/{tenant}")).await;
    assert!(
        baseline.contains("secret_in_payload</span> on <code class=\"tool\">s3.get</code>")
            && baseline.contains("test key from the docs"),
        "the open suppression is on the baseline page"
    );

    let resolved = ravi
        .page(&format!("/incidents?tenant={tenant}&status=resolved&since=1h"))
        .await;
    assert!(resolved.contains(&first) && !resolved.contains(&second));
    let marked = ravi.page("/incidents?status=false_positive").await;
    assert!(marked.contains(&second) && !marked.contains(&first));
    assert_eq!(ravi.get("/incidents?status=closed").await.status(), 422);
    assert_eq!(ravi.get("/incidents?since=forever").await.status(), 422);
    app.stop().await;
}

#[tokio::test]
async fn a_session_ends_at_its_deadline_or_after_an_hour_unused() {
    let app = spawn_app().await;
    add_user(&app, "ines", "viewer").await;
    let web = Web::login(&app, "ines").await;
    assert_eq!(web.get("/tenants").await.status(), 200);
    // Time passes: the session was last used 61 minutes ago.
    sqlx::query("update sessions set last_seen_at = now() - interval '61 minutes'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(web.get("/tenants").await.status(), 303, "idle for over an hour");

    let web = Web::login(&app, "ines").await;
    assert_eq!(web.get("/tenants").await.status(), 200);
    // Time passes: twelve hours since login, however busy.
    sqlx::query("update sessions set expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(web.get("/tenants").await.status(), 303, "past its absolute end");
    assert_eq!(web.get("/v1/tenants").await.status(), 401);
    app.stop().await;
}

/// OpenBao, asked directly for things Vigil never does (mounting an engine).
async fn enable_kv2(mount: &str) {
    let addr = required_env("VIGIL_TEST_VAULT_ADDR");
    let token = required_env("VIGIL_TEST_VAULT_TOKEN");
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{addr}/v1/sys/mounts/{mount}"))
        .header("X-Vault-Token", &token)
        .json(&json!({"type": "kv", "options": {"version": "2"}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "mount {mount}: {}", r.status());
    // A new KV v2 mount upgrades itself in the background; wait until it takes writes.
    for _ in 0..100 {
        let w = client
            .post(format!("{addr}/v1/{mount}/data/probe"))
            .header("X-Vault-Token", &token)
            .json(&json!({"data": {"ready": "yes"}}))
            .send()
            .await
            .unwrap();
        if w.status().is_success() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the {mount} mount did not accept writes within 10 s");
}

#[tokio::test]
async fn a_failed_rotation_can_be_retried_once_the_backend_is_fixed() {
    let app = spawn_app().await;
    let tenant = unique_tenant("retry");
    let (token, _) = app.warmed_up_tenant(&app.vault, &tenant, "*").await;
    let mount = format!("kv-{tenant}");
    let secret = json!({"backend": "vault", "kind": "kv2", "mount": mount, "path": "app"});
    app.put_bindings(&tenant, json!([{"tools": "*", "secrets": [secret]}]))
        .await;
    let incident = app.leak_a_key(&token, "leak-1", "s3.get", json!({})).await;
    let failed = app.settled_rotations(&tenant).await;
    assert_eq!(failed[0]["status"], "failed", "no such mount yet: {failed:#?}");
    let failed_id = failed[0]["id"].as_str().unwrap().to_owned();

    add_user(&app, "rosa", "responder").await;
    let rosa = Web::login(&app, "rosa").await;
    let page = rosa.page("/rotations?status=failed").await;
    assert!(
        page.contains(&failed_id) && page.contains("rotation failed"),
        "failed rows stand out"
    );
    assert!(page.contains(">Retry</button>"));

    enable_kv2(&mount).await;
    let r = rosa.act(&format!("/rotations/{failed_id}/retry"), &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], format!("/incidents/{incident}").as_str());
    let rotations = app.settled_rotations(&tenant).await;
    assert_eq!(rotations.len(), 2, "{rotations:#?}");
    let retry = &rotations[0];
    assert_eq!(retry["status"], "succeeded", "{retry:#}");
    assert_eq!(retry["trigger"], "manual");
    assert_eq!(retry["incident_id"], incident.as_str());
    assert_eq!(rotations[1]["status"], "failed", "the failed attempt stays on record");
    let again = rosa
        .act(&format!("/rotations/{}/retry", retry["id"].as_str().unwrap()), &[])
        .await;
    assert_eq!(
        again.status(),
        303,
        "a finished rotation may be retried by hand, as through the API"
    );

    let audit: Value = app.admin_json(&format!("/v1/incidents/{incident}")).await;
    assert_eq!(
        audit["rotations"].as_array().unwrap().len(),
        3,
        "the failed one and both retries"
    );
    assert!(rosa.page("/audit").await.contains("rotation.retry"));
    app.stop().await;
}

#[tokio::test]
async fn a_responder_rotates_a_tenants_secrets_by_hand() {
    let app = spawn_app().await;
    let tenant = unique_tenant("hand");
    let (_, path) = app.warmed_up_tenant(&app.vault, &tenant, "*").await;
    let before = app.vault.current_version(&path).await;
    add_user(&app, "hugo", "responder").await;
    let hugo = Web::login(&app, "hugo").await;

    let r = hugo
        .act(&format!("/tenants/{tenant}/rotate"), &[("tools", ""), ("reason", "")])
        .await;
    assert_eq!(r.status(), 422, "a reason is required");
    let r = hugo
        .act(
            &format!("/tenants/{tenant}/rotate"),
            &[("tools", ""), ("reason", "laptop stolen")],
        )
        .await;
    assert_eq!(r.status(), 303);
    let rotations = app.settled_rotations(&tenant).await;
    assert_eq!(rotations.len(), 1);
    assert_eq!(rotations[0]["status"], "succeeded");
    assert_eq!(rotations[0]["trigger"], "manual");
    assert_eq!(rotations[0]["scope"], "tenant");
    assert_eq!(
        app.vault.current_version(&path).await,
        before + 1,
        "OpenBao holds a new version"
    );
    let audit = hugo.page(&format!("/audit?tenant={tenant}")).await;
    assert!(audit.contains("rotation.manual") && audit.contains("laptop stolen"));
    app.stop().await;
}

#[tokio::test]
async fn agent_sent_markup_reaches_every_page_escaped() {
    let app = spawn_app().await;
    let (tenant, incident) = hostile_incident(&app).await;
    app.settled_rotations(&tenant).await;
    add_user(&app, "xena", "responder").await;
    let web = Web::login(&app, "xena").await;
    let r = web
        .act(&format!("/incidents/{incident}/acknowledge"), &[("note", TOOL_SCRIPT)])
        .await;
    assert_eq!(r.status(), 303);

    for page in [
        "/incidents".to_owned(),
        format!("/incidents/{incident}"),
        "/rotations".to_owned(),
        format!("/tenants/{tenant}"),
        "/audit".to_owned(),
    ] {
        let html = web.page(&page).await;
        for payload in [
            TOOL_SCRIPT,
            TOOL_HANDLER,
            TOOL_URL,
            PARAM_KEY,
            PARAM_VALUE,
            AGENT,
            BINDING_GLOB,
        ] {
            let raw_markup = payload.starts_with('<') || payload.starts_with('"');
            assert!(
                !(raw_markup && html.contains(payload)),
                "{page} contains {payload} unescaped"
            );
        }
        assert!(!html.contains("<script>window"), "{page}");
        assert!(!html.contains("onerror=\"window"), "{page}");
        assert!(!html.contains("href=\"javascript:"), "{page}");
    }
    let incident_page = web.page(&format!("/incidents/{incident}")).await;
    assert!(incident_page.contains("&#60;script&#62;window.__xss=1;alert(1)&#60;/script&#62;"));
    // The agent-chosen key is a group's subject and a timeline entry's text: shown, as text.
    assert!(
        incident_page.contains(
            r#"<code class="subject">params[&#34;&#60;svg onload=\&#34;window.__xss=4\&#34;&#62;&#34;]</code>"#
        )
    );
    assert!(incident_page.contains("first secret_in_payload on &#60;script&#62;"));
    app.stop().await;
}

#[tokio::test]
async fn the_cli_adds_a_user_whose_password_is_stored_only_as_an_argon2_hash() {
    use std::io::Write;
    let app = spawn_app().await;
    let database_url: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let server = required_env("VIGIL_TEST_DATABASE_URL");
    let (base, _) = server.rsplit_once('/').unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["user", "add", "cli-ana", "--role", "responder"])
        .env("VIGIL_DATABASE_URL", format!("{base}/{database_url}"))
        .env("VIGIL_LOG", "error")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hash: String = sqlx::query_scalar("select password_hash from users where name = 'cli-ana'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$") && !hash.contains(PASSWORD));
    assert_eq!(Web::submit_login(&app, "cli-ana", PASSWORD).await.status(), 303);

    let weak = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["user", "add", "cli-bob", "--role", "root"])
        .env("VIGIL_DATABASE_URL", format!("{base}/{database_url}"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("--role must be viewer, responder or admin"));
    app.stop().await;
}
