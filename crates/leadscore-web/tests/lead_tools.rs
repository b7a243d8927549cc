//! The lead list's tools and the contact's data tools, through the pages: search,
//! quadrant view, bulk assignment, a sales rep's unassigned pool and the admin's switch
//! for it, export and erasure,
//! and the HTML 404 for paths that are no page.

#![allow(clippy::unwrap_used)]

mod common;

use common::PASSWORD;
use leadscore_app::contacts::{self, NewContact};
use leadscore_server::EngineConfig;
use leadscore_store::Role;
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::{Value, json};

const NOW: i64 = 1_772_442_000_000;

/// The example model scores `title` and `company_size` as fit.
async fn app(engine: EngineConfig) -> (tempfile::TempDir, std::sync::Arc<leadscore_server::AppState>, String) {
    let (dir, state) = common::state_with(NOW, engine).await;
    let people: [(&str, &str, &str, Option<&str>); 3] =
        [("ann", "Ann", "Acme Robotics", Some("sales@example.com")), ("bob", "Bob", "Globex", None), ("cid", "Cid", "Initech", Some("other@example.com"))];
    for (id, first_name, company, owner) in people {
        let attributes = json!({ "first_name": first_name, "company": company, "title": "VP Marketing" });
        let Value::Object(attributes) = attributes else { unreachable!() };
        let new = NewContact {
            id: Some(id.into()),
            email: Some(format!("{id}@{}.com", company.split(' ').next().unwrap().to_lowercase())),
            owner: owner.map(str::to_string),
            attributes,
            ..NewContact::default()
        };
        contacts::upsert(&state.engine, new).await.unwrap();
    }
    common::add_users(&state.engine, &[("admin@example.com", Role::Admin), ("marketing@example.com", Role::Marketing), ("sales@example.com", Role::Sales)])
        .await;
    let base = common::serve(state.clone()).await;
    (dir, state, base)
}

/// A signed-in browser: a client and its session cookie.
struct Session {
    client: reqwest::Client,
    cookie: String,
}

impl Session {
    fn get(&self, url: String) -> reqwest::RequestBuilder {
        self.client.get(url).header(reqwest::header::COOKIE, &self.cookie)
    }

    /// A form post from this site (as a browser sends it).
    fn post(&self, url: String) -> reqwest::RequestBuilder {
        self.client.post(url).header(reqwest::header::COOKIE, &self.cookie).header("sec-fetch-site", "same-origin")
    }
}

async fn signed_in(base: &str, email: &str) -> Session {
    let client = reqwest::Client::builder().no_proxy().redirect(Policy::none()).build().unwrap();
    let answer = client.post(format!("{base}/login")).form(&[("email", email), ("password", PASSWORD), ("next", "/")]).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let cookie = answer.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_string();
    Session { client, cookie }
}

async fn page(session: &Session, url: String) -> (StatusCode, String) {
    let answer = session.get(url).send().await.unwrap();
    (answer.status(), answer.text().await.unwrap())
}

fn config() -> EngineConfig {
    EngineConfig { workers: false, sweep_interval: None, ..EngineConfig::default() }
}

#[tokio::test(flavor = "multi_thread")]
async fn search_quadrants_and_bulk_assignment() {
    let (_dir, state, base) = app(config()).await;
    let marketing = signed_in(&base, "marketing@example.com").await;

    let (status, html) = page(&marketing, format!("{base}/leads?model=b2b&q=ACME")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("ann@acme.com") && !html.contains("bob@globex.com"), "the search finds the company, any case");
    let (_, html) = page(&marketing, format!("{base}/leads?model=b2b&q=bob")).await;
    assert!(html.contains("bob@globex.com") && !html.contains("ann@acme.com"), "and the name");

    let (status, html) = page(&marketing, format!("{base}/leads?model=b2b&view=quadrants")).await;
    assert_eq!(status, StatusCode::OK);
    for quadrant in ["sales-ready", "long-term target", "researcher", "unqualified"] {
        assert!(html.contains(&format!(">{quadrant}</h2>")), "the {quadrant} quadrant is shown");
    }

    // Bulk: the chosen leads get the owner and the group; the others stay as they were.
    let answer = marketing
        .post(format!("{base}/leads/bulk"))
        .form(&[("id", "bob"), ("id", "cid"), ("owner", "sales@example.com"), ("add_group", "spring-push"), ("back", "/leads?model=b2b")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(answer.headers()["location"], "/leads?model=b2b&changed=2");
    for id in ["bob", "cid"] {
        let contact = contacts::find(&state.engine, id).await.unwrap();
        assert_eq!(contact.owner.as_deref(), Some("sales@example.com"), "{id} assigned");
        assert!(contact.groups.contains(&"spring-push".to_string()), "{id} in the group");
    }
    assert!(!contacts::find(&state.engine, "ann").await.unwrap().groups.contains(&"spring-push".to_string()), "ann was not chosen");
    let (_, html) = page(&marketing, format!("{base}/leads?model=b2b&changed=2")).await;
    assert!(html.contains("Changed 2 leads."));

    // Nothing to do is said, not silently ignored.
    let empty = marketing.post(format!("{base}/leads/bulk")).form(&[("id", "bob")]).send().await.unwrap();
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rep_sees_the_unassigned_pool_only_when_the_server_allows_it() {
    for pool in [false, true] {
        let (_dir, _state, base) = app(EngineConfig { sales_pool: pool, ..config() }).await;
        let sales = signed_in(&base, "sales@example.com").await;
        let (_, html) = page(&sales, format!("{base}/leads?model=b2b")).await;
        assert!(html.contains("ann@acme.com"), "their own");
        assert!(!html.contains("cid@initech.com"), "never another rep's");
        assert_eq!(html.contains("bob@globex.com"), pool, "the unassigned lead with pool = {pool}");
        let (status, _) = page(&sales, format!("{base}/contacts/bob")).await;
        assert_eq!(status, if pool { StatusCode::OK } else { StatusCode::NOT_FOUND });
        // Asking for another owner does not widen the reach.
        let (_, html) = page(&sales, format!("{base}/leads?model=b2b&owner=other@example.com")).await;
        assert!(!html.contains("cid@initech.com"));
    }
}

/// The admin opens and closes the pool on the settings page: in force at once, stored (a
/// restarted server keeps the choice over its configuration), and in the audit log.
#[tokio::test(flavor = "multi_thread")]
async fn an_admin_opens_the_pool_on_the_settings_page() {
    let (dir, state, base) = app(config()).await;
    let (admin, sales) = (signed_in(&base, "admin@example.com").await, signed_in(&base, "sales@example.com").await);
    let (_, html) = page(&admin, format!("{base}/settings")).await;
    assert!(html.contains(r#"name="allowed""#) && !html.contains("checked"), "the box is there, unticked as configured");

    let answer = admin.post(format!("{base}/settings/pool")).form(&[("allowed", "1")]).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(answer.text().await.unwrap().contains("also see the leads without an owner"));
    let (_, html) = page(&sales, format!("{base}/leads?model=b2b")).await;
    assert!(html.contains("bob@globex.com"), "the rep sees the unassigned lead at once");
    assert_eq!(page(&sales, format!("{base}/contacts/bob")).await.0, StatusCode::OK);
    assert_eq!(page(&sales, format!("{base}/settings")).await.0, StatusCode::FORBIDDEN, "only an admin changes it");

    // A restarted server (configured without the pool) keeps the admin's choice.
    let store = std::sync::Arc::new(leadscore_store_sqlite::SqliteStore::open_dir(dir.path()).unwrap());
    let restarted = leadscore_app::Engine::new(store, std::sync::Arc::new(|| NOW), config()).await.unwrap();
    assert!(restarted.sales_pool(), "the stored choice holds after a restart");

    let answer = admin.post(format!("{base}/settings/pool")).form::<[(&str, &str); 0]>(&[]).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let (_, html) = page(&sales, format!("{base}/leads?model=b2b")).await;
    assert!(!html.contains("bob@globex.com") && html.contains("ann@acme.com"), "closed again: their own only");
    restarted.reload_options().await.unwrap();
    assert!(!restarted.sales_pool(), "another process reads the change when it reloads");
    let audit = leadscore_app::audit::list(&state.engine, 10).await.unwrap();
    assert!(serde_json::to_string(&audit).unwrap().contains("Sales reps now see only the leads assigned to them"), "{audit:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_exports_and_erases_a_contact_and_unknown_paths_get_a_page() {
    let (_dir, state, base) = app(config()).await;
    let admin = signed_in(&base, "admin@example.com").await;
    let (_, html) = page(&admin, format!("{base}/contacts/ann")).await;
    assert!(html.contains("/contacts/ann/export") && html.contains("/contacts/ann/erase"), "the admin has the data tools");
    let sales = signed_in(&base, "sales@example.com").await;
    let (_, html) = page(&sales, format!("{base}/contacts/ann")).await;
    assert!(!html.contains("/contacts/ann/erase"), "a rep has not");

    let export = admin.get(format!("{base}/contacts/ann/export")).send().await.unwrap();
    assert_eq!(export.status(), StatusCode::OK);
    assert!(export.headers()["content-disposition"].to_str().unwrap().contains("contact-ann.json"));
    let document: Value = export.json().await.unwrap();
    assert_eq!(document["contact"]["email"], "ann@acme.com");

    let unconfirmed = admin.post(format!("{base}/contacts/ann/erase")).form(&[("confirm", "")]).send().await.unwrap();
    assert_eq!(unconfirmed.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(contacts::find(&state.engine, "ann").await.is_ok(), "nothing erased without the box ticked");
    let erased = admin.post(format!("{base}/contacts/ann/erase")).form(&[("confirm", "erase")]).send().await.unwrap();
    assert_eq!(erased.status(), StatusCode::OK);
    assert!(contacts::find(&state.engine, "ann").await.unwrap_err().is_not_found());
    let (status, _) = page(&admin, format!("{base}/contacts/ann")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A path that is no page gets the HTML error page; API paths keep the JSON one.
    let missing = admin.get(format!("{base}/no/such/page")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(missing.text().await.unwrap().contains("There is no page at this address"));
    for path in ["/api/v1/no-such-route", "/api/v2/contacts", "/v1/no-such-call"] {
        let api = admin.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(api.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = api.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
}
