//! Who may open what (contract §8, F26), as a table: every page × nobody, each role. This
//! table is the documentation of the web app's access rules; the JSON API has its own
//! (API keys with scopes, sessions with roles) in leadscore-server's tests.

#![allow(clippy::unwrap_used)]

mod common;

use common::PASSWORD;
use leadscore_app::contacts;
use leadscore_app::contacts::NewContact;
use leadscore_store::Role;
use reqwest::StatusCode;
use reqwest::redirect::Policy;
const NOW: i64 = 1_772_442_000_000;

async fn app() -> (tempfile::TempDir, String) {
    let (dir, state) = common::state(NOW).await;
    for (id, owner) in [("mine", Some("sales@example.com")), ("theirs", Some("other@example.com")), ("pool", None)] {
        let new = NewContact { id: Some(id.into()), email: Some(format!("{id}@acme.com")), owner: owner.map(str::to_string), ..NewContact::default() };
        contacts::upsert(&state.engine, new).await.unwrap();
    }
    common::add_users(&state.engine, &[("admin@example.com", Role::Admin), ("marketing@example.com", Role::Marketing), ("sales@example.com", Role::Sales)])
        .await;
    (dir, common::serve(state).await)
}

/// The session cookie of `email`, signed in through the form.
async fn sign_in(client: &reqwest::Client, base: &str, email: &str) -> String {
    let answer = client.post(format!("{base}/login")).form(&[("email", email), ("password", PASSWORD), ("next", "/")]).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER, "{email} signs in");
    let cookie = answer.headers().get(reqwest::header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    cookie.split(';').next().unwrap().to_string()
}

/// (path, nobody, admin, marketing, sales): 200 open, 303 to the sign-in, 403 refused,
/// 404 out of reach (a contact that is not the rep's reads as one that does not exist).
const PAGES: &[(&str, u16, u16, u16, u16)] = &[
    ("/", 303, 200, 200, 200),
    ("/leads", 303, 200, 200, 200),
    ("/leads?format=csv", 303, 200, 200, 200),
    ("/contacts/mine", 303, 200, 200, 200),
    ("/contacts/theirs", 303, 200, 200, 404),
    ("/contacts/pool", 303, 200, 200, 404),
    ("/contacts/nobody-at-all", 303, 404, 404, 404),
    ("/accounts", 303, 200, 200, 200),
    ("/accounts/acme.com", 303, 200, 200, 200),
    ("/leads?view=quadrants", 303, 200, 200, 200),
    ("/leads?q=acme&quadrant=researcher&source=ads", 303, 200, 200, 200),
    ("/contacts/mine/export", 303, 200, 403, 403),
    ("/contacts/theirs/export", 303, 200, 403, 403),
    ("/models", 303, 200, 200, 200),
    ("/models/b2b", 303, 200, 200, 200),
    ("/models/b2b?suggest=1", 303, 200, 200, 200),
    ("/models/nope", 303, 404, 404, 404),
    ("/settings", 303, 200, 403, 403),
    ("/no-such-page", 404, 404, 404, 404),
    ("/login", 200, 200, 200, 200),
    ("/assets/app.css", 200, 200, 200, 200),
];

/// (path, form, nobody, admin, marketing, sales) of the forms: 303 done (back to a page),
/// 200 done with a notice, and as above.
/// A form's fields.
type Fields = &'static [(&'static str, &'static str)];

const FORMS: &[(&str, Fields, u16, u16, u16, u16)] = &[
    ("/contacts/mine/status", &[("status", "contacted")], 303, 303, 303, 303),
    ("/contacts/theirs/status", &[("status", "contacted")], 303, 303, 303, 404),
    ("/contacts/mine/feedback", &[("rating", "4"), ("note", "good call")], 303, 303, 303, 303),
    ("/contacts/theirs/feedback", &[("rating", "4")], 303, 303, 303, 404),
    ("/settings/teams", &[("name", "emea"), ("members", "a@example.com")], 303, 200, 403, 403),
    ("/settings/keys", &[("name", "site"), ("ingest", "1")], 303, 200, 403, 403),
    ("/settings/webhooks", &[("name", "crm"), ("url", "http://127.0.0.1:9/hook"), ("score.changed", "1")], 303, 200, 403, 403),
    ("/settings/webhooks/crm/delete", &[], 303, 200, 403, 403),
    ("/leads/bulk", &[("id", "pool"), ("add_group", "vip"), ("back", "/leads")], 303, 303, 303, 403),
    // Last: the admin's erasure takes the contact away.
    ("/contacts/theirs/erase", &[("confirm", "erase")], 303, 200, 403, 403),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_page_and_form_by_role() {
    let (_dir, base) = app().await;
    let client = reqwest::Client::builder().no_proxy().redirect(Policy::none()).build().unwrap();
    let mut cookies = vec![None];
    for email in ["admin@example.com", "marketing@example.com", "sales@example.com"] {
        cookies.push(Some(sign_in(&client, &base, email).await));
    }
    let who = ["nobody", "admin", "marketing", "sales"];
    let mut wrong = Vec::new();
    for (path, nobody, admin, marketing, sales) in PAGES {
        for (i, expected) in [nobody, admin, marketing, sales].into_iter().enumerate() {
            let mut request = client.get(format!("{base}{path}"));
            if let Some(cookie) = &cookies[i] {
                request = request.header(reqwest::header::COOKIE, cookie);
            }
            let status = request.send().await.unwrap().status().as_u16();
            if status != *expected {
                wrong.push(format!("GET {path} as {}: {status}, expected {expected}", who[i]));
            }
        }
    }
    for (path, form, nobody, admin, marketing, sales) in FORMS {
        for (i, expected) in [nobody, admin, marketing, sales].into_iter().enumerate() {
            let mut request = client.post(format!("{base}{path}")).header("sec-fetch-site", "same-origin").form(form);
            if let Some(cookie) = &cookies[i] {
                request = request.header(reqwest::header::COOKIE, cookie);
            }
            let status = request.send().await.unwrap().status().as_u16();
            if status != *expected {
                wrong.push(format!("POST {path} as {}: {status}, expected {expected}", who[i]));
            }
        }
    }
    assert!(wrong.is_empty(), "the access table does not hold:\n{}", wrong.join("\n"));

    // The same forms sent from another site are refused, whoever is signed in.
    let cross = client
        .post(format!("{base}/contacts/mine/status"))
        .header("sec-fetch-site", "cross-site")
        .header(reqwest::header::COOKIE, cookies[1].as_ref().unwrap())
        .form(&[("status", "won")])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);

    // A session cookie is an API credential too, with the user's role (the API's own table
    // is in leadscore-server's tests).
    let api = client.get(format!("{base}/api/v1/contacts/mine")).header(reqwest::header::COOKIE, cookies[1].as_ref().unwrap()).send().await.unwrap();
    assert_eq!(api.status(), StatusCode::OK);

    // Signed out, the cookie opens nothing.
    let out = client.post(format!("{base}/logout")).header(reqwest::header::COOKIE, cookies[3].as_ref().unwrap()).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let after = client.get(format!("{base}/")).header(reqwest::header::COOKIE, cookies[3].as_ref().unwrap()).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER, "back to the sign-in");
}
