//! The web app in a real browser: Debian's chromium driven by its chromedriver over the
//! WebDriver protocol (a few JSON calls, below). Runs when LEADSCORE_TEST_BROWSER=1 (CI
//! installs chromium and chromium-driver and sets it); LEADSCORE_TEST_CHROMIUM and
//! LEADSCORE_TEST_CHROMEDRIVER override /usr/bin/chromium and /usr/bin/chromedriver.
//! Screenshots of every page go to LEADSCORE_TEST_SCREENSHOTS (default:
//! target/screenshots).

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::PASSWORD;
use leadscore_app::contacts::NewContact;
use leadscore_app::{contacts, events};
use leadscore_store::Role;
use serde_json::{Value, json};

struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    async fn start(chromium: &str, chromedriver: &str) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(chromedriver).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().unwrap();
        for _ in 0..100 {
            if http.get(format!("{base}/status")).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": { "browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000"],
        } } } });
        // Session starts fail now and then in containers: one retry.
        let mut session = None;
        for _ in 0..2 {
            let answer: Value = http.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
            if let Some(id) = answer["value"]["sessionId"].as_str() {
                session = Some(id.to_string());
                break;
            }
            eprintln!("session start failed: {answer}");
        }
        Browser { driver, base, session: session.expect("a WebDriver session"), http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(answer["value"].get("error").is_none(), "WebDriver {path}: {answer}");
        answer["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap().to_string()
    }

    async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None).await.as_str().unwrap().to_string()
    }

    async fn find(&self, css: &str) -> String {
        let found = self.call(reqwest::Method::POST, "/element", Some(json!({ "using": "css selector", "value": css }))).await;
        found[ELEMENT].as_str().unwrap().to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{element}/value"), Some(json!({ "text": text }))).await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await;
    }

    /// Clicks a button that submits a form and waits until the page it leads to has loaded
    /// (the click returns before the navigation is done): the old page's element is gone
    /// and the document is complete.
    async fn submit(&self, css: &str) {
        let element = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await;
        for _ in 0..200 {
            let stale = self.http.get(self.url(&format!("/element/{element}/name"))).send().await.unwrap().json::<Value>().await.unwrap();
            let gone = stale["value"]["error"].as_str().is_some_and(|e| e.contains("stale"));
            let ready = self.call(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": "return document.readyState", "args": [] }))).await;
            if gone && ready == "complete" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the page after clicking {css} did not load");
    }

    async fn screenshot(&self, name: &str) {
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        let dir = std::env::var("LEADSCORE_TEST_SCREENSHOTS").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/screenshots").to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/{name}.png"), bytes).unwrap();
    }

    async fn sign_in(&self, app: &str, email: &str) {
        self.go(&format!("{app}/login")).await;
        self.type_into("#email", email).await;
        self.type_into("#password", PASSWORD).await;
        self.submit("form[action='/login'] button").await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// A served app with two sales reps' leads, one unassigned, and users for each role.
async fn app() -> (tempfile::TempDir, String) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let (dir, state) = common::state(now).await;
    let engine = state.engine.clone();
    for (id, first, owner) in [
        ("lead-ana-1", "Alma", Some("ana@example.com")),
        ("lead-ana-2", "Arne", Some("ana@example.com")),
        ("lead-bob-1", "Bodo", Some("bob@example.com")),
        ("lead-pool", "Pia", None),
    ] {
        let mut attributes = serde_json::Map::new();
        for (key, value) in [
            ("first_name", json!(first)),
            ("last_name", json!("Tester")),
            ("job_title", json!("CTO")),
            ("company", json!("acme")),
            ("company_size", json!(500)),
            ("product_interest", json!("platform")),
        ] {
            attributes.insert(key.into(), value);
        }
        let new =
            NewContact { id: Some(id.into()), email: Some(format!("{id}@acme.com")), attributes, owner: owner.map(str::to_string), ..NewContact::default() };
        contacts::upsert(&engine, new).await.unwrap();
        let items: Vec<Value> = (0..3)
            .map(|n| json!({ "type": "track", "userId": id, "event": "Form Submitted", "properties": { "form": "quote" }, "timestamp": leadscore_app::time::format_time(now - (n + 1) * 86_400_000), "messageId": format!("{id}-{n}") }))
            .collect();
        let checked = events::check_batch(&engine, &items, now);
        assert!(checked.rejected.is_empty(), "{:?}", checked.rejected);
        events::ingest(&engine, checked.events, now, "native", leadscore_store::IdentityTrust::Trusted).await.unwrap();
    }
    common::add_users(
        &engine,
        &[("admin@example.com", Role::Admin), ("ana@example.com", Role::Sales), ("bob@example.com", Role::Sales), ("mia@example.com", Role::Marketing)],
    )
    .await;
    let base = common::serve(state).await;
    (dir, base)
}

fn browser_paths() -> Option<(String, String)> {
    if std::env::var("LEADSCORE_TEST_BROWSER").as_deref() != Ok("1") {
        eprintln!("skipped: set LEADSCORE_TEST_BROWSER=1 (see .ci/run) to run the browser test");
        return None;
    }
    Some((
        std::env::var("LEADSCORE_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
        std::env::var("LEADSCORE_TEST_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into()),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sales_rep_signs_in_works_their_leads_and_signs_out() {
    let Some((chromium, chromedriver)) = browser_paths() else { return };
    let (_dir, app) = app().await;
    let browser = Browser::start(&chromium, &chromedriver).await;

    // Not signed in: every page sends the browser to the sign-in form.
    browser.go(&format!("{app}/leads")).await;
    assert!(browser.current_url().await.starts_with(&format!("{app}/login")));
    browser.screenshot("login").await;

    // A wrong password is refused, in words.
    browser.type_into("#email", "ana@example.com").await;
    browser.type_into("#password", "not the password").await;
    browser.submit("form[action='/login'] button").await;
    assert!(browser.source().await.contains("wrong e-mail or password"));

    // Ana sees her own hot leads on Today, not Bob's, not the pool's.
    browser.sign_in(&app, "ana@example.com").await;
    assert_eq!(browser.current_url().await, format!("{app}/"));
    let today = browser.source().await;
    assert!(today.contains("Alma Tester") && today.contains("Arne Tester"), "her leads on Today");
    assert!(!today.contains("Bodo Tester") && !today.contains("Pia Tester"), "no one else's");
    browser.screenshot("today").await;

    // Bob's lead by its URL: not found, as if it did not exist.
    browser.go(&format!("{app}/contacts/lead-bob-1")).await;
    let refused = browser.source().await;
    assert!(refused.contains("Not found") && !refused.contains("Bodo Tester"));

    // Her lead: the scores, the reasons; record that she qualified it.
    browser.go(&format!("{app}/contacts/lead-ana-1")).await;
    let page = browser.source().await;
    assert!(page.contains("Why this score") && page.contains("Request a quote"), "the timeline names the rule");
    browser.submit("button[name='status'][value='qualified']").await;
    assert_eq!(browser.current_url().await, format!("{app}/contacts/lead-ana-1"));
    let page = browser.source().await;
    assert!(page.contains("status <strong>qualified</strong>"), "the status shows on the contact");
    browser.screenshot("contact").await;
    browser.go(&format!("{app}/")).await;
    let today = browser.source().await;
    let row = today.split("Alma Tester").nth(1).unwrap_or_default();
    assert!(row.split("</tr>").next().unwrap_or_default().contains("qualified"), "and on Today");

    browser.go(&format!("{app}/leads")).await;
    assert!(browser.source().await.contains("Arne Tester"));
    browser.screenshot("leads").await;

    // Settings are the admin's: the rep is refused, by the menu and by the URL.
    assert!(!browser.source().await.contains("href=\"/settings\""), "no settings link for a rep");
    browser.go(&format!("{app}/settings")).await;
    assert!(browser.source().await.contains("Settings are for admins."));

    // Her account page lists her contacts of it, not Bob's.
    browser.go(&format!("{app}/accounts/acme.com")).await;
    let account = browser.source().await;
    assert!(account.contains("Alma Tester") && !account.contains("Bodo Tester"), "only her contacts of the account");

    // Signed out, the pages are closed again, the back button included.
    browser.submit("form[action='/logout'] button").await;
    assert!(browser.current_url().await.starts_with(&format!("{app}/login")));
    browser.go(&format!("{app}/contacts/lead-ana-1")).await;
    assert!(browser.current_url().await.starts_with(&format!("{app}/login")), "the old session is gone");

    // Marketing sees everyone's leads and may act on them, but not the settings.
    browser.sign_in(&app, "mia@example.com").await;
    browser.go(&format!("{app}/leads")).await;
    let leads = browser.source().await;
    assert!(leads.contains("Bodo Tester") && leads.contains("Alma Tester"), "every rep's leads");
    assert!(leads.contains("Apply to chosen"), "with the bulk actions");
    browser.go(&format!("{app}/settings")).await;
    assert!(browser.source().await.contains("Settings are for admins."));
    browser.go(&format!("{app}/")).await;
    browser.submit("form[action='/logout'] button").await;

    // The admin sees everyone's leads.
    browser.sign_in(&app, "admin@example.com").await;
    browser.go(&format!("{app}/leads")).await;
    let leads = browser.source().await;
    assert!(leads.contains("Bodo Tester") && leads.contains("Pia Tester") && leads.contains("Alma Tester"));
    browser.screenshot("leads-admin").await;

    // Bulk: the admin gives the unassigned lead to Bob; nobody else changes.
    browser.click("input[name='id'][value='lead-pool']").await;
    browser.click("select[name='owner'] option[value='bob@example.com']").await;
    browser.submit("form.bulk button[type='submit']").await;
    let leads = browser.source().await;
    assert!(leads.contains("Changed 1 lead."), "the change is confirmed");
    let row = |page: &str, name: &str| page.split_once(name).and_then(|(_, rest)| rest.split("</tr>").next()).unwrap_or_default().to_string();
    assert!(row(&leads, "Pia Tester").contains("bob@example.com"), "the pool lead is Bob's now");
    assert!(row(&leads, "Alma Tester").contains("ana@example.com"), "Alma stays Ana's");

    // Search and the quadrant view.
    browser.go(&format!("{app}/leads?q=pia")).await;
    let found = browser.source().await;
    assert!(found.contains("Pia Tester") && !found.contains("Alma Tester"), "the search finds by name");
    browser.go(&format!("{app}/leads?view=quadrants")).await;
    assert!(browser.source().await.contains("sales-ready"));
    browser.screenshot("leads-quadrants").await;

    // Settings: a new ingest key is shown once.
    browser.go(&format!("{app}/settings")).await;
    assert!(browser.source().await.contains("ana@example.com"), "the users are listed");
    browser.type_into("#key-name", "website").await;
    browser.click("input[name='ingest']").await;
    browser.submit("form[action='/settings/keys'] button").await;
    let created = browser.source().await;
    assert!(created.contains("It is shown only this once") && created.contains("lsk_"), "the key, once");
    browser.screenshot("settings").await;
    browser.go(&format!("{app}/settings")).await;
    assert!(!browser.source().await.contains("It is shown only this once"), "and never again");
    browser.go(&format!("{app}/accounts")).await;
    assert!(browser.source().await.contains("acme.com"));
    browser.screenshot("accounts").await;
    let _ = browser.call(reqwest::Method::DELETE, "", None).await;
}
