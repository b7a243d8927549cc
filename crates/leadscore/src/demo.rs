//! `leadscore demo`: the example model and a generated, realistic demo data set, served.

use std::sync::Arc;

use anyhow::{Context, Result};
use leadscore_core::model::EXAMPLE_MODEL_TOML;
use leadscore_store::{ContactUpsert, EventKind, Identity, Millis, NewEvent};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, json};

use crate::{DataArgs, open_store, progress_bar, start_engine};

const DAY: Millis = 86_400_000;

const TITLES: &[(&str, u32)] = &[
    ("CEO", 3),
    ("CTO", 4),
    ("Founder", 2),
    ("VP Marketing", 4),
    ("Director of Sales", 6),
    ("IT Director", 5),
    ("Marketing Manager", 12),
    ("Product Manager", 10),
    ("Engineering Manager", 8),
    ("Software Engineer", 14),
    ("Analyst", 10),
    ("Consultant", 6),
    ("Student", 5),
    ("Marketing Intern", 3),
    ("Office Administrator", 5),
];
const INDUSTRIES: &[&str] = &["software", "manufacturing", "healthcare", "finance", "retail", "education", "logistics"];
const COUNTRIES: &[(&str, u32)] = &[("US", 45), ("DE", 15), ("GB", 12), ("FR", 8), ("NL", 6), ("IN", 8), ("BR", 6)];
const FIRST: &[&str] = &[
    "anna", "ben", "carla", "dev", "emma", "felix", "grace", "hugo", "iris", "jon", "kim", "leo", "maya", "nils", "olga", "paul", "rosa", "sam", "tara", "uma",
];
const LAST: &[&str] = &["smith", "garcia", "müller", "chen", "patel", "rossi", "kowalski", "nguyen", "okafor", "silva", "jones", "kim", "dubois", "jansen"];
const COMPANIES: &[&str] = &[
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "vandelay",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
    "soylent",
    "aperture",
    "massive",
    "piedpiper",
];
const FREE_MAIL: &[&str] = &["gmail.com", "outlook.com", "yahoo.com"];

fn weighted<'a>(rng: &mut StdRng, items: &'a [(&'a str, u32)]) -> &'a str {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut pick = rng.random_range(0..total);
    for (item, weight) in items {
        if pick < *weight {
            return item;
        }
        pick -= weight;
    }
    items[0].0
}

fn pick<'a>(rng: &mut StdRng, items: &'a [&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// Generates `contacts` contacts and about 6.7 events each over the 90 days before `now`.
/// Deterministic for a given seed: intent varies per contact so the lead list has a
/// realistic spread of hot, warm and cold leads.
/// A status sales recorded in the demo: (contact id, status, time).
pub type DemoOutcome = (String, &'static str, Millis);

pub fn generate(contacts: usize, seed: u64, now: Millis) -> (Vec<ContactUpsert>, Vec<NewEvent>, Vec<DemoOutcome>) {
    let mut people = Vec::with_capacity(contacts);
    let mut events = Vec::with_capacity(contacts * 8);
    let mut outcomes = Vec::new();
    for n in 0..contacts {
        let mut rng = contact_rng(seed, n);
        let person = demo_contact(n, &mut rng, now);
        let created = person.created_at.unwrap_or(now);
        people.push(person);
        let intent = intent(&mut rng);
        let count = (2.0 + intent * 40.0 * rng.random::<f64>()) as usize;
        events.extend(demo_events(n, count, intent, &mut rng, now));
        outcomes.extend(demo_outcomes(n, intent, created, &mut rng, now));
    }
    (people, events, outcomes)
}

/// What sales did with a demo contact over the last 60 days. Driven by the contact's
/// hidden buying intent (which also drives its events), never by its score: the demo's
/// reports then show how well the score tracks intent, as real outcomes would.
fn demo_outcomes(n: usize, intent: f64, created: Millis, rng: &mut StdRng, now: Millis) -> Vec<DemoOutcome> {
    let id = format!("c{n:07}");
    let mut outcomes = Vec::new();
    if !rng.random_bool((0.1 + 0.6 * intent).min(1.0)) {
        return outcomes;
    }
    let mut at = (now - rng.random_range(5..60) * DAY).max(created + DAY).min(now);
    outcomes.push((id.clone(), "contacted", at));
    if !rng.random_bool((0.3 + 0.5 * intent).min(1.0)) {
        if rng.random_bool(0.3) {
            outcomes.push((id, "disqualified", (at + rng.random_range(1..5) * DAY).min(now)));
        }
        return outcomes;
    }
    at = (at + rng.random_range(1..10) * DAY).min(now);
    outcomes.push((id.clone(), "qualified", at));
    at = (at + rng.random_range(3..30) * DAY).min(now);
    let won = rng.random_bool((0.1 + 0.8 * intent).min(1.0));
    outcomes.push((id, if won { "won" } else { "lost" }, at));
    outcomes
}

/// Each contact has its own random stream, so any range of contacts can be generated
/// alone (benchmarks generate millions in chunks) and still match a full run.
pub fn contact_rng(seed: u64, n: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Buying intent in [0, 1): most contacts browse a little, a few are in a buying cycle.
pub fn intent(rng: &mut StdRng) -> f64 {
    rng.random::<f64>().powi(3)
}

pub fn demo_contact(n: usize, rng: &mut StdRng, now: Millis) -> ContactUpsert {
    let first = pick(rng, FIRST);
    let last = pick(rng, LAST);
    let company = pick(rng, COMPANIES);
    let domain = match rng.random_range(0..100) {
        0..=2 => "rivalcorp.com".to_string(),
        3..=17 => pick(rng, FREE_MAIL).to_string(),
        _ => format!("{company}.com"),
    };
    let email = format!("{first}.{last}.{n}@{domain}");
    let country = weighted(rng, COUNTRIES);
    let city = city_of(country, rng);
    let mut attributes = Map::new();
    attributes.insert("job_title".into(), json!(weighted(rng, TITLES)));
    attributes.insert("company".into(), json!(company));
    attributes.insert("company_size".into(), json!([5, 20, 50, 120, 300, 800, 2500, 10000][rng.random_range(0..8)]));
    attributes.insert("industry".into(), json!(pick(rng, INDUSTRIES)));
    attributes.insert("country".into(), json!(country));
    attributes.insert("city".into(), json!(city));
    attributes.insert("source".into(), json!(["organic", "paid_search", "webinar", "referral", "event", "outbound"][rng.random_range(0..6)]));
    attributes.insert("product_interest".into(), json!(if rng.random_bool(0.85) { "platform" } else { "services" }));
    attributes.insert("first_name".into(), json!(capitalized(first)));
    attributes.insert("last_name".into(), json!(capitalized(last)));
    let mut groups = Vec::new();
    if city == "Austin" {
        groups.push("austin".to_string());
    }
    if rng.random_bool(0.08) {
        groups.push("clients".to_string());
    }
    ContactUpsert {
        id: Some(format!("c{n:07}")),
        email: Some(email),
        attributes,
        groups,
        owner: demo_owner(n, country, city),
        created_at: Some(now - rng.random_range(1..120) * DAY),
        historical: true,
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// The sales rep who owns a demo lead: the region's team, round robin; one lead in five
/// (and India and Brazil, which no team covers) is still in the unassigned pool.
fn demo_owner(n: usize, country: &str, city: &str) -> Option<String> {
    if n.is_multiple_of(5) {
        return None;
    }
    let team: &[&str] = match (country, city) {
        (_, "Austin") => DEMO_TEAMS[0].1,
        ("US", _) => DEMO_TEAMS[1].1,
        ("DE" | "GB" | "FR" | "NL", _) => DEMO_TEAMS[2].1,
        _ => return None,
    };
    Some(team[n % team.len()].to_string())
}

/// The demo's sales teams (the example automations assign to them).
const DEMO_TEAMS: [(&str, &[&str]); 3] = [
    ("austin-sales", &["ana.austin@example.com", "ben.austin@example.com"]),
    ("na-sales", &["nora.na@example.com", "noah.na@example.com", "nick.na@example.com"]),
    ("emea-sales", &["eva.emea@example.com", "emil.emea@example.com"]),
];

fn city_of(country: &str, rng: &mut StdRng) -> &'static str {
    match country {
        "US" => ["Austin", "New York", "San Francisco", "Chicago"][rng.random_range(0..4)],
        "DE" => ["Berlin", "Munich", "Hamburg"][rng.random_range(0..3)],
        "GB" => ["London", "Manchester"][rng.random_range(0..2)],
        "FR" => ["Paris", "Lyon"][rng.random_range(0..2)],
        "NL" => "Amsterdam",
        "IN" => ["Bangalore", "Pune"][rng.random_range(0..2)],
        _ => "São Paulo",
    }
}

/// `count` events of contact `n` in the 90 days before `now`; more intent means more
/// pricing and feature pages, quote requests and recent activity.
pub fn demo_events(n: usize, count: usize, intent: f64, rng: &mut StdRng, now: Millis) -> Vec<NewEvent> {
    let recency = if intent > 0.3 { 20 } else { 90 };
    (0..count)
        .map(|k| {
            let ts = now - rng.random_range(0..recency * DAY).max(60_000);
            let roll: f64 = rng.random();
            let (kind, name, properties) = if roll < 0.55 {
                let path = if rng.random::<f64>() < intent.max(0.1) {
                    ["/pricing", "/pricing/enterprise", "/features/scoring", "/features/automation"][rng.random_range(0..4)]
                } else {
                    ["/", "/blog/lead-scoring-101", "/docs", "/careers", "/about", "/features"][rng.random_range(0..6)]
                };
                (EventKind::Page, "page", json!({ "path": path, "url": format!("https://example.com{path}") }))
            } else if roll < 0.80 {
                (EventKind::Track, "Email Link Clicked", json!({ "campaign": "newsletter" }))
            } else if roll < 0.90 {
                (EventKind::Track, "Webinar Attended", json!({ "webinar": "scoring-best-practices" }))
            } else if roll < 0.905 + 0.08 * intent {
                (EventKind::Track, "Form Submitted", json!({ "form": "quote" }))
            } else if roll > 0.995 {
                (EventKind::Track, "Unsubscribed", json!({}))
            } else {
                (EventKind::Track, "Form Submitted", json!({ "form": "newsletter" }))
            };
            NewEvent {
                message_id: format!("demo-{n:07}-{k:04}"),
                identity: Identity { user_id: Some(format!("c{n:07}")), email: None, anonymous_id: None },
                kind,
                name: name.to_string(),
                properties: properties.as_object().cloned().unwrap_or_default(),
                traits: Map::new(),
                context: Some(json!({ "library": { "name": "leadscore-demo" } })),
                timestamp: ts,
            }
        })
        .collect()
}

/// Loads contacts then events into the store through the normal write paths, with
/// progress bars; concurrent writes are grouped into shared commits by the store.
pub async fn load(state: &Arc<leadscore_app::Engine>, people: Vec<ContactUpsert>, events: Vec<NewEvent>) -> Result<()> {
    let bar = progress_bar(people.len() as u64, "contacts");
    let models = state.models();
    let now = state.now();
    let mut tasks = tokio::task::JoinSet::new();
    for person in people {
        let store = state.store.clone();
        let models = models.clone();
        tasks.spawn(async move { store.upsert_contact(person, &models, now).await.map(|_| ()) });
        if tasks.len() >= 256
            && let Some(done) = tasks.join_next().await
        {
            done??;
            bar.inc(1);
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let bar = progress_bar(events.len() as u64, "events");
    let mut chunks = events.into_iter().peekable();
    while chunks.peek().is_some() {
        let batch: Vec<NewEvent> = chunks.by_ref().take(1000).collect();
        let n = batch.len() as u64;
        // History: the demo's past does not fire its automations.
        state.store.ingest_with(batch, &models, now, false).await?;
        bar.inc(n);
    }
    bar.finish_and_clear();
    Ok(())
}

/// The contract's example automations and the sales teams they assign to. Their webhooks
/// point at crm.example.com, which does not exist: deliveries show up in the outbox,
/// retried, until they are pointed at a real endpoint.
async fn store_example_automations(state: &Arc<leadscore_app::Engine>) -> Result<()> {
    let now = state.now();
    for (team, members) in DEMO_TEAMS {
        state.store.put_team(team, members.iter().map(|m| m.to_string()).collect(), now).await?;
    }
    let automations = leadscore_core::automation::Automation::parse_file(leadscore_core::automation::EXAMPLE_AUTOMATIONS_TOML)
        .map_err(|e| anyhow::anyhow!("the example automations must parse: {e}"))?;
    let count = automations.len();
    for automation in automations {
        let new = leadscore_store::NewAutomation { name: automation.name, definition: automation.definition, enabled: automation.enabled };
        state.store.put_automation(new, now).await?;
    }
    state.reload_automations().await?;
    eprintln!("stored the {count} example automations and the teams austin-sales, na-sales, emea-sales");
    Ok(())
}

/// The demo's shadow model (F31): a candidate marketing is trying on live traffic.
const DEMO_SHADOW: &str = "b2b-next";

/// The example model with the pricing page worth 60 instead of 25 and the quote form 5
/// instead of 50, named [`DEMO_SHADOW`].
pub(crate) fn demo_shadow_model() -> Result<String> {
    let mut text = leadscore_core::model::renamed_source(EXAMPLE_MODEL_TOML, leadscore_core::Format::Toml, DEMO_SHADOW)?;
    for (rule, from, to) in [("name = \"Request a quote\"", "points = 50", "points = 5"), ("name = \"Visited pricing page\"", "points = 25", "points = 60")] {
        let start = text.find(rule).with_context(|| format!("the example model has no {rule}"))?;
        let at = text[start..].find(from).map(|i| start + i).with_context(|| format!("the example model's {rule} has no {from}"))?;
        text.replace_range(at..at + from.len(), to);
    }
    Ok(text.replacen("description = \"Main B2B scoring model\"", "description = \"Candidate: pricing page 60, quote form 5\"", 1))
}

/// Publishes the example model and its shadow, and on an empty store generates the demo's
/// contacts, events and statuses as of the state's clock, then the example automations.
pub async fn seed(state: &Arc<leadscore_app::Engine>, contacts: usize) -> Result<()> {
    if state.model("b2b").is_none() {
        let model = leadscore_core::Model::parse(EXAMPLE_MODEL_TOML).context("the example model must parse")?;
        leadscore_app::models::publish(state, model, EXAMPLE_MODEL_TOML, leadscore_core::Format::Toml, None).await?;
        eprintln!("published the example model `b2b`");
    }
    if state.store.count_contacts().await? == 0 {
        if state.model(DEMO_SHADOW).is_none() {
            let text = demo_shadow_model()?;
            let model = leadscore_core::Model::parse(&text).context("the demo's shadow model must parse")?;
            leadscore_app::models::publish(state, model, &text, leadscore_core::Format::Toml, Some("b2b".into())).await?;
            eprintln!(
                "published `{DEMO_SHADOW}`, a shadow of b2b (pricing page 60, quote form 5): compare with `leadscore report compare --model {DEMO_SHADOW}`"
            );
        }
        load_deals(state, contacts).await?;
    }
    if state.store.list_automations().await?.is_empty() {
        store_example_automations(state).await?;
    }
    Ok(())
}

/// The demo's contacts, their events and statuses over 90 days, then its predictive model
/// learned from the won and lost deals (when there are enough).
pub async fn load_deals(state: &Arc<leadscore_app::Engine>, contacts: usize) -> Result<()> {
    let now = state.now();
    let (people, events, outcomes) = generate(contacts, 42, now);
    eprintln!("generating {} contacts and {} events over 90 days…", people.len(), events.len());
    load(state, people, events).await?;
    let bar = progress_bar(outcomes.len() as u64, "outcomes");
    for (contact, status, at) in &outcomes {
        let kind = leadscore_store::OutcomeKind::Status { status: status.to_string() };
        leadscore_app::outcomes::record(state, contact, kind, *at).await.context("recording a demo outcome")?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!("recorded {} demo statuses (contacted, qualified, won, lost), driven by each contact's hidden intent", outcomes.len());
    train_predictive(state).await
}

/// Learns the demo's predictive score from its won and lost deals, when there are enough
/// (a small demo has fewer than the 500 closed deals training asks for, and says so).
async fn train_predictive(state: &Arc<leadscore_app::Engine>) -> Result<()> {
    use leadscore_app::predictive::{TrainRequest, train};
    match train(state, TrainRequest::default(), Arc::new(|_| {})).await {
        Ok(version) => {
            eprintln!(
                "trained predictive model v{} on {} won and lost deals: holdout ROC AUC {:.3} ({:?}); `leadscore train` retrains",
                version.version, version.report.rows, version.report.auc, version.report.algorithm
            );
            Ok(())
        }
        Err(leadscore_app::predictive::PredictiveError::Store(err)) => Err(err.into()),
        Err(refused) => {
            eprintln!("no predictive model: {refused}");
            Ok(())
        }
    }
}

/// The demo's users, one per role (the sales rep owns leads in Austin), with their
/// passwords: made on the first run and kept in `file`, read from it afterwards.
async fn demo_logins(state: &Arc<leadscore_app::Engine>, file: &std::path::Path) -> Result<Vec<(String, String, String)>> {
    if let Ok(text) = std::fs::read_to_string(file) {
        let logins: Vec<(String, String, String)> = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                Some((parts.next()?.to_string(), parts.next()?.to_string(), parts.next()?.to_string()))
            })
            .collect();
        if !logins.is_empty() {
            return Ok(logins);
        }
    }
    let mut logins = Vec::new();
    for (role, email, name) in [
        (leadscore_store::Role::Admin, "admin@example.com", "Ada Admin"),
        (leadscore_store::Role::Marketing, "marketing@example.com", "Mia Marketing"),
        (leadscore_store::Role::Sales, "ana.austin@example.com", "Ana Austin"),
    ] {
        let password = leadscore_app::keys::generate_key()[4..20].to_string();
        let new = leadscore_app::users::NewUser { email: email.into(), password: password.clone(), role, name: Some(name.into()) };
        match leadscore_app::users::add_user(state, new).await {
            Ok(_) => {}
            Err(leadscore_app::users::UserError::EmailTaken(_)) => {
                // Made by an earlier run whose logins file is gone: a new password.
                let user = leadscore_store::UserStore::find_user_by_email(state.store.as_ref(), email).await?.context("the demo user vanished")?;
                let changes = leadscore_app::users::UserChanges { password: Some(password.clone()), ..Default::default() };
                leadscore_app::users::update_user(state, &user.id, changes).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            Err(err) => return Err(anyhow::anyhow!("cannot add the demo user {email}: {err}")),
        }
        logins.push((role.as_str().to_string(), email.to_string(), password));
    }
    let text: String = logins.iter().map(|(role, email, password)| format!("{role} {email} {password}\n")).collect();
    std::fs::write(file, text).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(logins)
}

pub async fn run(data: DataArgs, addr: Option<String>, contacts: usize, no_serve: bool) -> Result<()> {
    let mut data = data;
    if data.data.is_none() && data.database_url.is_none() {
        data.data = Some("leadscore-demo".into());
    }
    let store = open_store(&data).await?;
    let state = start_engine(&data, store.clone()).await?;
    seed(&state, contacts).await?;
    let key_file = data.data.clone().unwrap_or_else(|| "leadscore-demo".into()).join("demo-admin-key.txt");
    let key = match std::env::var("LEADSCORE_ADMIN_KEY") {
        Ok(key) => key,
        Err(_) => match std::fs::read_to_string(&key_file) {
            Ok(key) => key.trim().to_string(),
            Err(_) => {
                let key = leadscore_app::keys::generate_key();
                if let Some(dir) = key_file.parent() {
                    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
                }
                std::fs::write(&key_file, &key).with_context(|| format!("cannot write {}", key_file.display()))?;
                key
            }
        },
    };
    state.bootstrap_admin_key(Some(&key)).await?;
    let logins_file = key_file.with_file_name("demo-logins.txt");
    let logins = demo_logins(&state, &logins_file).await?;
    let contacts = state.store.count_contacts().await?;
    let events = state.store.count_events().await?;
    let shadows: Vec<String> = state.models().iter().filter(|m| m.is_shadow()).map(|m| m.name.clone()).collect();
    let shadows = if shadows.is_empty() { String::new() } else { format!(" (shadow: {})", shadows.join(", ")) };
    eprintln!("\ndemo data: {contacts} contacts, {events} events, model b2b{shadows}");
    if no_serve {
        return Ok(());
    }
    let addr = addr.unwrap_or_else(|| "127.0.0.1:8080".into());
    eprintln!("admin API key (also in {}):\n\n  {key}\n", key_file.display());
    eprintln!("sign in to the web app at http://{addr}/ as (also in {}):\n", logins_file.display());
    for (role, email, password) in &logins {
        eprintln!("  {role:<10} {email:<28} {password}");
    }
    eprintln!();
    eprintln!("try:\n  curl -s -H 'Authorization: Bearer {key}' 'http://{addr}/api/v1/contacts?model=b2b&band=hot&limit=5'\n");
    crate::serve(crate::http_state(&data, state)?, &addr).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_shadow_model_changes_two_rules() {
        let shadow = leadscore_core::Model::parse(&demo_shadow_model().unwrap()).unwrap();
        let live = leadscore_core::Model::parse(EXAMPLE_MODEL_TOML).unwrap();
        assert_eq!(shadow.name, DEMO_SHADOW);
        let points = |m: &leadscore_core::Model, rule: &str| m.activity.iter().find(|r| r.name == rule).map(|r| r.points);
        assert_eq!((points(&shadow, "Request a quote"), points(&live, "Request a quote")), (Some(5.0), Some(50.0)));
        assert_eq!((points(&shadow, "Visited pricing page"), points(&live, "Visited pricing page")), (Some(60.0), Some(25.0)));
    }

    /// `demo --help` and the README give the figure: about 6.7 events per contact.
    #[test]
    fn the_demo_makes_about_6_7_events_per_contact() {
        let (people, events, _) = generate(3000, 42, 1_800_000_000_000);
        let mean = events.len() as f64 / people.len() as f64;
        assert!((6.55..6.85).contains(&mean), "{mean:.2} events per contact: change the --contacts help text");
    }

    #[test]
    fn generation_is_deterministic_and_sized() {
        let now = 1_800_000_000_000;
        let (a, ea, oa) = generate(200, 7, now);
        let (b, eb, ob) = generate(200, 7, now);
        assert_eq!(oa, ob);
        assert!(!oa.is_empty() && oa.len() < 200 * 3, "some contacts have statuses: {}", oa.len());
        // Each contact's statuses are in time order, after its creation, not in the future.
        for (contact, _, at) in &oa {
            let created = a.iter().find(|p| p.id.as_deref() == Some(contact.as_str())).and_then(|p| p.created_at).unwrap();
            assert!(*at >= created && *at <= now, "{contact} at {at}");
        }
        assert_eq!(a.len(), 200);
        assert_eq!(ea.len(), eb.len());
        assert_eq!(a[17].email, b[17].email);
        assert!(ea.len() > 200 * 4, "about 6.7 events per contact, got {}", ea.len());
        assert!(ea.iter().all(|e| e.timestamp < 1_800_000_000_000 && e.timestamp > 1_800_000_000_000 - 91 * DAY));
    }
}
