//! The model pages: the list, one model with its rules and versions, and the rule model
//! suggested from the predictive model's weights with its backtest beside the live rules
//! (issue 14) — for marketing; a sales rep reads the model without it.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::PASSWORD;
use leadscore_app::contacts::{self, NewContact};
use leadscore_app::{outcomes, predictive};
use leadscore_store::Role;
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::json;

const NOW: i64 = 1_772_442_000_000;

async fn page(base: &str, email: &str, path: &str) -> (StatusCode, String) {
    let client = reqwest::Client::builder().no_proxy().redirect(Policy::none()).build().unwrap();
    let answer = client.post(format!("{base}/login")).form(&[("email", email), ("password", PASSWORD), ("next", "/")]).send().await.unwrap();
    let cookie = answer.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_string();
    let answer = client.get(format!("{base}{path}")).header(reqwest::header::COOKIE, cookie).send().await.unwrap();
    (answer.status(), answer.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_page_suggests_rules_from_the_predictive_model_with_their_backtest() {
    let (_dir, state) = common::state(NOW).await;
    common::add_users(&state.engine, &[("marketing@example.com", Role::Marketing), ("sales@example.com", Role::Sales)]).await;
    let base = common::serve(state.clone()).await;

    let (status, list) = page(&base, "sales@example.com", "/models").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains(r#"href="/models/b2b""#) && list.contains("live"), "{list}");
    // Before any predictive model: the model page says how to get a suggestion.
    let (_, before) = page(&base, "marketing@example.com", "/models/b2b?suggest=1").await;
    assert!(before.contains("Once a predictive model is trained"), "{before}");
    assert!(before.contains("[[fit]]"), "the rules as published");

    // 300 closed deals: a VP wins far more often than an intern.
    for i in 0..300 {
        let vp = i % 3 != 0;
        let title = if vp { "VP Marketing" } else { "Intern" };
        let attributes = json!({ "title": title, "company_size": 100 + i % 7 * 50 }).as_object().cloned().unwrap();
        contacts::upsert(&state.engine, NewContact { id: Some(format!("d{i:03}")), attributes, ..NewContact::default() }).await.unwrap();
        let won = if vp { i % 5 != 0 } else { i % 6 == 0 };
        outcomes::record_status(&state.engine, &format!("d{i:03}"), if won { "won" } else { "lost" }, None).await.unwrap();
    }
    let request = predictive::TrainRequest { min_closed: Some(200), ..predictive::TrainRequest::default() };
    predictive::train(&state.engine, request, Arc::new(|_| {})).await.unwrap();

    let (_, offered) = page(&base, "marketing@example.com", "/models/b2b").await;
    assert!(offered.contains("Suggest a rule model"), "{offered}");
    let (status, suggested) = page(&base, "marketing@example.com", "/models/b2b?suggest=1").await;
    assert_eq!(status, StatusCode::OK);
    for expected in ["Suggested draft", "ROC AUC", "name = &quot;b2b-suggested&quot;", "learned weights went", "title", "VP Marketing"] {
        assert!(suggested.contains(expected), "{expected:?} missing from the page:\n{suggested}");
    }
    // The draft on the page is the one the API answers.
    let view = leadscore_app::suggested::suggest(&state.engine, Some("b2b")).await.unwrap();
    let escaped = view.model.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;");
    assert!(suggested.contains(&escaped), "the page shows another draft");
    // A sales rep reads the model, without the suggestion.
    let (status, sales) = page(&base, "sales@example.com", "/models/b2b?suggest=1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(sales.contains("[[fit]]") && !sales.contains("Suggested from the predictive score"), "{sales}");
    let (status, _) = page(&base, "marketing@example.com", "/models/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
