//! `leadscore bench`: generates data and measures what PRODUCT.md §7 sets bars for.
//! Each figure is printed with what was measured; BENCHMARKS.md records them.
//!
//! The HTTP benchmarks run the server and the load generator in this one process (they
//! share the machine's cores), against a fresh durable SQLite database, or with
//! `--database-url postgres://…` a fresh schema in that PostgreSQL database (dropped at
//! the end). `ingest --processes 2` (PostgreSQL only) runs two servers, each with its own
//! store and connection pool on the shared schema, and splits the connections between
//! them: what two leadscore processes do, except that they share this process's runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use leadscore_app::Engine;
use leadscore_core::model::EXAMPLE_MODEL_TOML;
use leadscore_store::NewEvent;
use serde_json::{Value, json};

use crate::demo::{contact_rng, demo_contact, demo_events, intent};
use crate::{DataArgs, open_existing_store, open_store, start_engine};

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    which: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Fill a database with N contacts and M events (demo-like), for `rescore` and `leadlist`
    Generate {
        #[command(flatten)]
        data: DataArgs,
        /// Contacts to generate
        #[arg(long, default_value_t = 1_000_000)]
        contacts: usize,
        /// Events to generate, spread over the contacts
        #[arg(long, default_value_t = 10_000_000)]
        events: usize,
    },
    /// Publish each live model again as a new version and time the full rescore; reports
    /// time and peak memory
    Rescore {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Batch ingest through the HTTP API into a fresh durable database, scores updated
    Ingest {
        /// Contacts the events come from
        #[arg(long, default_value_t = 20_000)]
        contacts: usize,
        /// Events to send
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Events per request
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Concurrent client connections
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Consecutive events per contact (a browsing session); 1 = every event from a
        /// different contact than the one before
        #[arg(long, default_value_t = 1)]
        session: usize,
        /// Run on a fresh schema in this PostgreSQL database instead of a temp SQLite one
        #[arg(long)]
        database_url: Option<String>,
        /// Servers sharing the database (PostgreSQL only); the connections are split between them
        #[arg(long, default_value_t = 1)]
        processes: usize,
        /// Store three automations first (hot, threshold, band/nurture; no outgoing
        /// deliveries), so every batch is also evaluated
        #[arg(long)]
        automations: bool,
        /// Seed 5,000 demo contacts with their won and lost deals and train a predictive
        /// model first, so every batch also stores its contacts' predictive scores
        #[arg(long)]
        predictive: bool,
        /// Put the contacts into this many accounts first (contact `uN` in `acct-{N mod
        /// accounts}`, set before the clock starts), so scoring also counts each contact's
        /// colleagues' activity when the predictive model uses accounts; 0 = no account
        #[arg(long, default_value_t = 0)]
        accounts: usize,
    },
    /// Single-event ingest latency at a fixed request rate
    Latency {
        /// Requests per second, one event each
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// How long to send for
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Run on a fresh schema in this PostgreSQL database instead of a temp SQLite one
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Soak: single-event ingest at a fixed rate, lead-list reads and rescores at the same
    /// time against a `leadscore serve` child process, for minutes; reports latency
    /// percentiles and errors per kind and the server's resident memory over time
    Soak {
        /// How long to run, in seconds
        #[arg(long, default_value_t = 180)]
        duration: u64,
        /// Ingest requests per second, one event each
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Contacts the events come from (seeded first with `--seed-events` events)
        #[arg(long, default_value_t = 20_000)]
        contacts: usize,
        /// Events stored before the soak starts, so a rescore has work to do
        #[arg(long, default_value_t = 200_000)]
        seed_events: usize,
        /// Clients reading the lead list
        #[arg(long, default_value_t = 2)]
        readers: usize,
        /// Lead-list requests per second, all readers together (a person paging through
        /// the list, not a flood: the per-key rate limit, 2,000/s, is shared with ingest)
        #[arg(long, default_value_t = 20)]
        read_rate: u64,
        /// Publish a new model version (a full rescore) every this many seconds
        #[arg(long, default_value_t = 60)]
        rescore_every: u64,
        /// Sample the server's resident memory every this many seconds
        #[arg(long, default_value_t = 5)]
        sample_every: u64,
        /// Run on a fresh schema in this PostgreSQL database instead of a temp SQLite one
        #[arg(long)]
        database_url: Option<String>,
        /// Start the server under this command, e.g. `heaptrack -o /tmp/soak` for a heap
        /// profile (words split on spaces; the server's own command line follows). The
        /// memory samples are then of the wrapper's process: use the profiler's figures
        #[arg(long)]
        server_wrapper: Option<String>,
    },
    /// Lead list (top N filtered by band) latency over HTTP on an existing database
    Leadlist {
        #[command(flatten)]
        data: DataArgs,
        /// The band to filter by
        #[arg(long, default_value = "hot")]
        band: String,
        /// Contacts per page (the top N)
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Requests to time
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Time the web app's /leads page (signed in as a temporary admin user) instead of
        /// the JSON lead list
        #[arg(long)]
        page: bool,
        /// More of the page's query, e.g. `q=acme` (search) or `quadrant=researcher`
        #[arg(long, default_value = "")]
        query: String,
    },
}

pub async fn run(args: BenchArgs) -> Result<()> {
    match args.which {
        BenchCommand::Generate { data, contacts, events } => generate(&data, contacts, events).await,
        BenchCommand::Rescore { data } => rescore(&data).await,
        BenchCommand::Ingest { contacts, events, batch, concurrency, session, database_url, processes, automations, predictive, accounts } => {
            let database = BenchDatabase::new(database_url)?;
            let shape = IngestShape { contacts, events, batch, concurrency, session, automations, predictive, accounts };
            let outcome = ingest(&database, processes, &shape).await;
            database.clean_up().await;
            outcome
        }
        BenchCommand::Latency { rate, seconds, database_url } => {
            let database = BenchDatabase::new(database_url)?;
            let outcome = latency(&database, rate, seconds).await;
            database.clean_up().await;
            outcome
        }
        BenchCommand::Soak { duration, rate, contacts, seed_events, readers, read_rate, rescore_every, sample_every, database_url, server_wrapper } => {
            let database = BenchDatabase::new(database_url)?;
            let shape = SoakShape { duration, rate, contacts, seed_events, readers, read_rate, rescore_every, sample_every, server_wrapper };
            let outcome = soak(&database, &shape).await;
            if database.postgres.is_some() {
                // The schema was made by the child server: open it here only to drop it.
                if let Err(err) = database.open().await {
                    eprintln!("could not open the soak schema to drop it: {err:#}");
                }
            }
            database.clean_up().await;
            outcome
        }
        BenchCommand::Leadlist { data, band, limit, requests, page, query } => {
            if page {
                lead_page(&data, &band, &query, requests).await
            } else {
                leadlist(&data, &band, limit, requests).await
            }
        }
    }
}

/// Peak resident memory of this process (Linux), in MiB.
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    format!("{cpus} cores, {model}")
}

async fn ensure_example_model(state: &Arc<Engine>) -> Result<()> {
    if state.model("b2b").is_none() {
        let model = leadscore_core::Model::parse(EXAMPLE_MODEL_TOML)?;
        let version = state
            .store
            .publish_model(
                leadscore_store::NewModelVersion { name: "b2b".into(), source: EXAMPLE_MODEL_TOML.into(), format: "toml".into(), shadow_of: None },
                state.now(),
            )
            .await?;
        state.reload_models().await?;
        tracing::debug!(version = version.version, rules = model.activity.len(), "published the example model");
    }
    Ok(())
}

async fn generate(data: &DataArgs, contacts: usize, events: usize) -> Result<()> {
    let state = start_engine(data, open_store(data).await?).await?;
    ensure_example_model(&state).await?;
    if state.store.count_contacts().await? > 0 {
        bail!("the database already holds contacts; generate into an empty --data directory");
    }
    let now = state.now();
    let per_contact = events as f64 / contacts.max(1) as f64;
    let bar = crate::progress_bar(contacts as u64, "generating contacts + events");
    let started = Instant::now();
    let models = state.models();
    let mut total_events = 0u64;
    let chunk = 1000;
    let mut tasks = tokio::task::JoinSet::new();
    for start in (0..contacts).step_by(chunk) {
        let end = (start + chunk).min(contacts);
        let mut people = Vec::with_capacity(end - start);
        let mut batch: Vec<NewEvent> = Vec::new();
        for n in start..end {
            let mut rng = contact_rng(7, n);
            people.push(demo_contact(n, &mut rng, now));
            let intent = intent(&mut rng);
            // Spread the requested total: more events for contacts with more intent.
            let count = (per_contact * (0.5 + 2.0 * intent)).round() as usize;
            batch.extend(demo_events(n, count, intent, &mut rng, now));
        }
        total_events += batch.len() as u64;
        for person in people {
            let store = state.store.clone();
            let models = models.clone();
            tasks.spawn(async move { store.upsert_contact(person, &models, now).await.map(|_| ()) });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        for events in batch.chunks(1000) {
            state.store.ingest(events.to_vec(), &models, now).await?;
        }
        bar.inc((end - start) as u64);
    }
    bar.finish_and_clear();
    println!("generated {contacts} contacts and {total_events} events in {:.1?}", started.elapsed());
    Ok(())
}

async fn rescore(data: &DataArgs) -> Result<()> {
    let state = start_engine(data, open_existing_store(data).await?).await?;
    let names: Vec<String> = state.models().iter().map(|m| m.name.clone()).collect();
    if names.is_empty() {
        bail!("no live model; run `leadscore bench generate` first");
    }
    let contacts = state.store.count_contacts().await?;
    let events = state.store.count_events().await?;
    let before = peak_memory_mib();
    for name in names {
        // A rescore follows a model change: publish the live model with 5 more points on
        // its second activity rule (the example's pricing page: most active contacts'
        // scores move, as in a real edit).
        let live = state.model(&name).context("the model vanished")?;
        let mut definition = live.model.definition.clone();
        if let Some(points) = definition.pointer_mut("/activity/1/points") {
            *points = json!(points.as_f64().unwrap_or(0.0) + 5.0);
        }
        state
            .store
            .publish_model(
                leadscore_store::NewModelVersion { name: name.clone(), source: definition.to_string(), format: "json".into(), shadow_of: None },
                state.now(),
            )
            .await?;
        state.reload_models().await?;
        let started = Instant::now();
        crate::rescore_with_progress(&state, &name).await?;
        let elapsed = started.elapsed();
        println!(
            "rescore {name}: {contacts} contacts / {events} events in {:.2} s ({:.0} events/s); peak memory {:.0} MiB (before: {:.0} MiB); {}",
            elapsed.as_secs_f64(),
            events as f64 / elapsed.as_secs_f64(),
            peak_memory_mib().unwrap_or(f64::NAN),
            before.unwrap_or(f64::NAN),
            machine()
        );
    }
    Ok(())
}

/// A server on a random port over a fresh database in a temp dir, with the example model.
struct BenchServer {
    base: String,
    key: String,
    _dir: tempfile::TempDir,
}

async fn start_server(data: Option<&DataArgs>) -> Result<BenchServer> {
    let dir = tempfile::tempdir().context("cannot create a temp dir")?;
    let store = match data {
        // An existing database to measure, never a new empty one.
        Some(d) => open_existing_store(d).await?,
        None => open_store(&DataArgs { data: Some(dir.path().to_path_buf()), ..DataArgs::default() }).await?,
    };
    let (base, key) = serve_store(store, None).await?;
    Ok(BenchServer { base, key, _dir: dir })
}

/// Serves `store` on a random port with the example model; `key` is an admin key already
/// in the database (a second server on it), else one is created. Returns (base URL, key).
async fn serve_store(store: Arc<dyn leadscore_store::Store>, key: Option<String>) -> Result<(String, String)> {
    serve_engine(start_engine(&DataArgs::default(), store).await?, key).await
}

/// [`serve_store`] for an engine already started (and seeded).
async fn serve_engine(state: Arc<Engine>, key: Option<String>) -> Result<(String, String)> {
    ensure_example_model(&state).await?;
    let key = match key {
        Some(key) => key,
        None => {
            let key = leadscore_app::keys::generate_key();
            state.bootstrap_admin_key(Some(&key)).await?;
            key
        }
    };
    let http = crate::http_state(&DataArgs::default(), state)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let pages = leadscore_web::router(http.state.engine.clone(), http.web);
    tokio::spawn(async move {
        let _ = leadscore_server::serve_with(http.state, listener, std::future::pending(), pages).await;
    });
    Ok((base, key))
}

/// The fresh database of an HTTP benchmark: a temp SQLite directory, or a schema of its
/// own in a PostgreSQL database (so a benchmark never mixes with data already there).
struct BenchDatabase {
    dir: tempfile::TempDir,
    /// (url, schema)
    postgres: Option<(String, String)>,
    /// Stores opened on the schema, to drop it at the end.
    opened: std::sync::Mutex<Vec<leadscore_store_postgres::PostgresStore>>,
}

impl BenchDatabase {
    fn new(database_url: Option<String>) -> Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a temp dir")?;
        let postgres = match database_url {
            None => None,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
                Some((url, format!("bench_{}_{nanos:x}", std::process::id())))
            }
            Some(_) => bail!("--database-url takes a postgres:// URL (without it the benchmark uses a temp SQLite database)"),
        };
        Ok(Self { dir, postgres, opened: std::sync::Mutex::new(Vec::new()) })
    }

    fn describe(&self) -> &'static str {
        if self.postgres.is_some() { "PostgreSQL" } else { "durable SQLite" }
    }

    /// A new store on the database: for PostgreSQL each call is a store with its own pool
    /// (another leadscore process); SQLite has one writer, so it is opened once.
    async fn open(&self) -> Result<Arc<dyn leadscore_store::Store>> {
        match &self.postgres {
            Some((url, schema)) => {
                let store = leadscore_store_postgres::PostgresStore::connect(url, Some(schema))
                    .await
                    .with_context(|| format!("cannot open schema {schema} in {}", crate::redact(url)))?;
                if let Ok(mut opened) = self.opened.lock() {
                    opened.push(store.clone());
                }
                Ok(Arc::new(store))
            }
            None => open_store(&DataArgs { data: Some(self.dir.path().to_path_buf()), ..DataArgs::default() }).await,
        }
    }

    /// Drops the PostgreSQL schema (a failure is reported, not fatal: the figures stand).
    async fn clean_up(self) {
        let store = self.opened.lock().ok().and_then(|mut opened| opened.pop());
        if let Some(store) = store
            && let Err(err) = store.drop_schema().await
        {
            eprintln!("could not drop the benchmark schema {}: {err}", store.schema());
        }
    }
}

fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder().pool_max_idle_per_host(64).build().context("cannot build the HTTP client")
}

/// Events in time order (the live case: folding, not replaying), over `contacts` contacts,
/// `session` consecutive events per contact.
fn ordered_events(contacts: usize, events: usize, session: usize, start_ms: i64) -> Vec<Value> {
    (0..events).map(|i| ordered_event(i, contacts, session, start_ms)).collect()
}

/// The `i`th event of [`ordered_events`].
fn ordered_event(i: usize, contacts: usize, session: usize, start_ms: i64) -> Value {
    let paths = ["/pricing", "/features/scoring", "/blog/lead-scoring-101", "/docs", "/careers", "/"];
    let contact = ((i / session.max(1)).wrapping_mul(2_654_435_761)) % contacts.max(1);
    let ts = start_ms + i as i64 * 50;
    let timestamp = chrono::DateTime::from_timestamp_millis(ts).map(|t| t.to_rfc3339()).unwrap_or_default();
    if i % 5 == 4 {
        json!({ "messageId": format!("b-{i}"), "type": "track", "event": "Email Link Clicked", "userId": format!("u{contact}"), "timestamp": timestamp, "properties": { "campaign": "nov" } })
    } else {
        json!({ "messageId": format!("b-{i}"), "type": "page", "userId": format!("u{contact}"), "timestamp": timestamp, "properties": { "path": paths[i % paths.len()] } })
    }
}

/// What an ingest benchmark sends.
struct IngestShape {
    contacts: usize,
    events: usize,
    batch: usize,
    concurrency: usize,
    session: usize,
    automations: bool,
    predictive: bool,
    accounts: usize,
}

/// The demo contacts `bench ingest --predictive` learns from (about 600 closed deals).
const PREDICTIVE_SEED_CONTACTS: usize = 5_000;

/// Automations for `bench ingest --automations`: triggers of every kind judged at ingest,
/// actions that stay inside the database (no deliveries to wait for).
const BENCH_AUTOMATIONS: [(&str, &str); 3] = [
    (
        "hot",
        "name = \"hot\"\nmodel = \"b2b\"\ntrigger = { hot = { points = 20, within = \"1d\" } }\nlimits = { max = 1, per = \"7d\" }\nactions = [ { add_group = { group = \"hot-now\" } } ]\n",
    ),
    (
        "handoff",
        "name = \"handoff\"\nmodel = \"b2b\"\ntrigger = { threshold = { score = \"total\", above = 60 } }\nactions = [ { set = { attribute = \"lifecycle_stage\", value = \"sql\" } } ]\n",
    ),
    (
        "ladder",
        "name = \"ladder\"\ntrigger = { band = { model = \"b2b\" } }\nactions = [ { nurture = { track_per_band = { cold = \"education\", warm = \"case-studies\", hot = \"\" } } } ]\n",
    ),
];

async fn ingest(database: &BenchDatabase, processes: usize, shape: &IngestShape) -> Result<()> {
    let IngestShape { contacts, events, batch, concurrency, session, automations, predictive, accounts } = *shape;
    if processes == 0 || (processes > 1 && database.postgres.is_none()) {
        bail!("--processes above 1 needs --database-url postgres://… (SQLite is one process's database)");
    }
    let first_engine = start_engine(&DataArgs::default(), database.open().await?).await?;
    if predictive {
        // Closed deals to learn from: every write then also stores a predictive score.
        crate::demo::load_deals(&first_engine, PREDICTIVE_SEED_CONTACTS).await?;
        if first_engine.predictive().is_none() {
            bail!("the seeded deals did not train a predictive model");
        }
    }
    let (first, key) = serve_engine(first_engine, None).await?;
    let mut bases = vec![first];
    for _ in 1..processes {
        bases.push(serve_store(database.open().await?, Some(key.clone())).await?.0);
    }
    let http = client()?;
    if automations {
        for (name, toml) in BENCH_AUTOMATIONS {
            let response = http
                .put(format!("{}/api/v1/automations/{name}", bases[0]))
                .bearer_auth(&key)
                .header("content-type", "application/toml")
                .body(toml)
                .send()
                .await?;
            if !response.status().is_success() {
                bail!("storing automation {name}: HTTP {}: {}", response.status(), response.text().await.unwrap_or_default());
            }
        }
    }
    if accounts > 0 {
        let identify: Vec<Value> = (0..contacts)
            .map(|c| json!({ "type": "identify", "userId": format!("u{c}"), "traits": { "account": format!("acct-{}", c % accounts) } }))
            .collect();
        for chunk in identify.chunks(1000) {
            let response = http.post(format!("{}/api/v1/events", bases[0])).bearer_auth(&key).json(&json!({ "batch": chunk })).send().await?;
            if !response.status().is_success() {
                bail!("putting the contacts into accounts: HTTP {}: {}", response.status(), response.text().await.unwrap_or_default());
            }
        }
    }
    let start_ms = chrono::Utc::now().timestamp_millis() - events as i64 * 50;
    // Bodies are built before the clock starts: the server is measured, not serde on the client.
    let bodies: Vec<Vec<u8>> = ordered_events(contacts, events, session, start_ms)
        .chunks(batch)
        .map(|chunk| serde_json::to_vec(&json!({ "batch": chunk })))
        .collect::<Result<_, _>>()?;
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bar = crate::progress_bar(bodies.len() as u64, "ingest batches");
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for connection in 0..concurrency {
        let (http, bodies, next, bar) = (http.clone(), bodies.clone(), next.clone(), bar.clone());
        let url = format!("{}/api/v1/events", bases[connection % bases.len()]);
        let key = key.clone();
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { return Ok::<(), anyhow::Error>(()) };
                let response = http.post(&url).bearer_auth(&key).header("content-type", "application/json").body(body.clone()).send().await?;
                if !response.status().is_success() {
                    bail!("batch {i}: HTTP {}: {}", response.status(), response.text().await.unwrap_or_default());
                }
                bar.inc(1);
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    println!(
        "ingest: {events} events in batches of {batch} over {concurrency} connections to {processes} server(s), {contacts} contacts{}, sessions of {session}, {}{}, scores updated: {:.2} s = {:.0} events/s; peak memory {:.0} MiB; {}",
        if accounts > 0 { format!(" in {accounts} accounts") } else { String::new() },
        database.describe(),
        match (automations, predictive) {
            (false, false) => "",
            (true, false) => ", 3 automations evaluated",
            (false, true) => ", a predictive model live (seeded with 5,000 demo contacts)",
            (true, true) => ", 3 automations evaluated, a predictive model live (seeded with 5,000 demo contacts)",
        },
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        peak_memory_mib().unwrap_or(f64::NAN),
        machine()
    );
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn latency(database: &BenchDatabase, rate: u64, seconds: u64) -> Result<()> {
    let (base, key) = serve_store(database.open().await?, None).await?;
    let http = client()?;
    let url = format!("{}/api/v1/events", base);
    let total = rate * seconds;
    let start_ms = chrono::Utc::now().timestamp_millis() - total as i64;
    let events = ordered_events(5_000, total as usize, 1, start_ms);
    let bodies: Vec<Vec<u8>> = events.iter().map(serde_json::to_vec).collect::<Result<_, _>>()?;
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for body in bodies {
        ticker.tick().await;
        let (http, url, key) = (http.clone(), url.clone(), key.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            let response = http.post(&url).bearer_auth(&key).header("content-type", "application/json").body(body).send().await?;
            let status = response.status();
            let _ = response.bytes().await?;
            if !status.is_success() {
                bail!("HTTP {status}");
            }
            Ok::<Duration, anyhow::Error>(sent.elapsed())
        });
    }
    let mut latencies = Vec::with_capacity(total as usize);
    while let Some(done) = tasks.join_next().await {
        latencies.push(done??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "single-event ingest at {rate} req/s for {seconds} s, {} ({} requests in {:.1} s): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {}",
        database.describe(),
        latencies.len(),
        elapsed.as_secs_f64(),
        percentile(&latencies, 50.0).as_secs_f64() * 1e3,
        percentile(&latencies, 99.0).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        machine()
    );
    Ok(())
}

async fn leadlist(data: &DataArgs, band: &str, limit: usize, requests: usize) -> Result<()> {
    if data.data.is_none() && data.database_url.is_none() {
        bail!("give --data DIR of a database filled by `leadscore bench generate`");
    }
    let server = start_server(Some(data)).await?;
    let http = client()?;
    let url = format!("{}/api/v1/contacts?model=b2b&band={band}&sort=-total&limit={limit}", server.base);
    let mut latencies = Vec::with_capacity(requests);
    let mut returned = 0;
    for _ in 0..requests {
        let sent = Instant::now();
        let response = http.get(&url).bearer_auth(&server.key).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        latencies.push(sent.elapsed());
        if !status.is_success() {
            bail!("HTTP {status}: {body}");
        }
        returned = body["contacts"].as_array().map_or(0, Vec::len);
    }
    latencies.sort();
    println!(
        "lead list top {limit} with band={band} ({returned} returned), {requests} requests: p50 {:.2} ms, p99 {:.2} ms; {}",
        percentile(&latencies, 50.0).as_secs_f64() * 1e3,
        percentile(&latencies, 99.0).as_secs_f64() * 1e3,
        machine()
    );
    Ok(())
}

/// The web app's lead list page (50 a page) at `band`, server time as the client sees it
/// on loopback, signed in as a user made for the run and deleted after it.
async fn lead_page(data: &DataArgs, band: &str, query: &str, requests: usize) -> Result<()> {
    if data.data.is_none() && data.database_url.is_none() {
        bail!("give --data DIR of a database filled by `leadscore bench generate`");
    }
    let server = start_server(Some(data)).await?;
    // The sign-in's cookie comes with its redirect: not followed, so it is seen.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().context("cannot build the HTTP client")?;
    let (email, password) = (format!("bench-{}@example.invalid", std::process::id()), leadscore_app::keys::generate_key());
    let user: Value = http
        .post(format!("{}/api/v1/users", server.base))
        .bearer_auth(&server.key)
        .json(&serde_json::json!({ "email": email, "password": password, "role": "admin" }))
        .send()
        .await?
        .json()
        .await?;
    let user_id = user["id"].as_str().with_context(|| format!("cannot make the bench user: {user}"))?.to_string();
    let signed_in =
        http.post(format!("{}/login", server.base)).form(&[("email", email.as_str()), ("password", password.as_str()), ("next", "/")]).send().await?;
    let cookie = signed_in
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.split(';').next().filter(|c| c.starts_with("leadscore_session=")).map(str::to_string))
        .context("the sign-in set no session cookie")?;
    let band = if band.is_empty() { String::new() } else { format!("&band={band}") };
    let more = if query.is_empty() { String::new() } else { format!("&{query}") };
    let url = format!("{}/leads?model=b2b{band}{more}", server.base);
    let mut latencies = Vec::with_capacity(requests);
    let mut rows = 0;
    for _ in 0..requests {
        let sent = Instant::now();
        let response = http.get(&url).header(reqwest::header::COOKIE, &cookie).send().await?;
        let status = response.status();
        let body = response.text().await?;
        latencies.push(sent.elapsed());
        if !status.is_success() {
            bail!("HTTP {status} for the lead list page");
        }
        rows = body.matches("<tr>").count().saturating_sub(1);
    }
    http.delete(format!("{}/api/v1/users/{user_id}", server.base)).bearer_auth(&server.key).send().await?;
    latencies.sort();
    println!(
        "lead list page /leads?model=b2b{band}{more} ({rows} rows), {requests} requests: p50 {:.2} ms, p99 {:.2} ms; {}",
        percentile(&latencies, 50.0).as_secs_f64() * 1e3,
        percentile(&latencies, 99.0).as_secs_f64() * 1e3,
        machine()
    );
    Ok(())
}

/// What a soak run does.
struct SoakShape {
    duration: u64,
    rate: u64,
    contacts: usize,
    seed_events: usize,
    readers: usize,
    read_rate: u64,
    rescore_every: u64,
    sample_every: u64,
    server_wrapper: Option<String>,
}

/// Resident memory of process `pid` (Linux), in MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Latencies and answers of one kind of request.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    /// Answers by status ("200", "503", …; "error" when no answer came).
    answers: std::collections::BTreeMap<String, u64>,
}

impl Tally {
    fn record(&mut self, answer: &str, latency: Duration) {
        *self.answers.entry(answer.to_string()).or_default() += 1;
        self.latencies.push(latency);
    }

    fn line(&mut self, kind: &str) -> String {
        self.latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let answers: Vec<String> = self.answers.iter().map(|(status, n)| format!("{status}: {n}")).collect();
        format!(
            "{kind}: {} requests, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms; answers {}",
            self.latencies.len(),
            ms(percentile(&self.latencies, 50.0)),
            ms(percentile(&self.latencies, 95.0)),
            ms(percentile(&self.latencies, 99.0)),
            ms(self.latencies.last().copied().unwrap_or_default()),
            answers.join(", ")
        )
    }
}

/// A `leadscore serve` child on a free port, killed when dropped.
struct ChildServer {
    child: std::process::Child,
    base: String,
    key: String,
    /// Started under a wrapper (a profiler), in a process group of its own: stopped with
    /// SIGTERM to the group, so the server shuts down and the profiler writes its data.
    wrapped: bool,
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if self.wrapped {
            let group = format!("-{}", self.child.id());
            let stopped = std::process::Command::new("kill").args(["-TERM", "--", &group]).status();
            if stopped.is_ok_and(|s| s.success()) {
                let _ = self.child.wait();
                return;
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn_server(database: &BenchDatabase, wrapper: Option<&str>) -> Result<ChildServer> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let key = leadscore_app::keys::generate_key();
    let program = std::env::current_exe().context("cannot find this program")?;
    let mut command = match wrapper.map(|w| w.split_whitespace().collect::<Vec<_>>()) {
        Some(words) if !words.is_empty() => {
            let mut command = std::process::Command::new(words[0]);
            command.args(&words[1..]).arg(program);
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
            command
        }
        _ => std::process::Command::new(program),
    };
    command.arg("serve").arg("--addr").arg(format!("127.0.0.1:{port}"));
    match &database.postgres {
        Some((url, schema)) => {
            let separator = if url.contains('?') { '&' } else { '?' };
            command.arg("--database-url").arg(format!("{url}{separator}options=-csearch_path%3D{schema}"));
        }
        None => {
            command.arg("--data").arg(database.dir.path());
        }
    }
    let child = command
        .env("LEADSCORE_ADMIN_KEY", &key)
        .env("LEADSCORE_LOG", "warn")
        .env_remove("LEADSCORE_DATA")
        .env_remove("LEADSCORE_DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("cannot start `leadscore serve`")?;
    let mut server = ChildServer { child, base: format!("http://127.0.0.1:{port}"), key, wrapped: wrapper.is_some_and(|w| !w.trim().is_empty()) };
    let http = client()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{}/healthz", server.base)).send().await.is_err() {
        if let Some(status) = server.child.try_wait()? {
            bail!("`leadscore serve` exited at start: {status}");
        }
        if Instant::now() > deadline {
            bail!("`leadscore serve` did not answer within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(server)
}

/// The live b2b model with 1 more point on its second activity rule: a new version, so a
/// full rescore.
async fn publish_changed_model(http: &reqwest::Client, base: &str, key: &str) -> Result<u64> {
    let live: Value = http.get(format!("{base}/api/v1/models/b2b")).bearer_auth(key).send().await?.json().await?;
    let mut definition = live["definition"].clone();
    if let Some(points) = definition.pointer_mut("/activity/1/points") {
        *points = json!(points.as_f64().unwrap_or(0.0) + 1.0);
    }
    let response =
        http.put(format!("{base}/api/v1/models/b2b")).bearer_auth(key).header("content-type", "application/json").body(definition.to_string()).send().await?;
    if !response.status().is_success() {
        bail!("publishing a new version: HTTP {}: {}", response.status(), response.text().await.unwrap_or_default());
    }
    let published: Value = response.json().await?;
    published["rescore"]["id"].as_u64().context("the publish started no rescore")
}

async fn soak(database: &BenchDatabase, shape: &SoakShape) -> Result<()> {
    let server = spawn_server(database, shape.server_wrapper.as_deref()).await?;
    let pid = server.child.id();
    let http = client()?;
    let response = http
        .put(format!("{}/api/v1/models/b2b", server.base))
        .bearer_auth(&server.key)
        .header("content-type", "application/toml")
        .body(EXAMPLE_MODEL_TOML)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("publishing the example model: HTTP {}", response.status());
    }
    // Seed: the contacts and their history, so the lead list and the rescore have work.
    let total = shape.seed_events + (shape.rate * shape.duration) as usize;
    let start_ms = chrono::Utc::now().timestamp_millis() - total as i64 * 50;
    let seed = ordered_events(shape.contacts, shape.seed_events, 1, start_ms);
    let seeding = Instant::now();
    for chunk in seed.chunks(1000) {
        let response = http.post(format!("{}/api/v1/events", server.base)).bearer_auth(&server.key).json(&json!({ "batch": chunk })).send().await?;
        if !response.status().is_success() {
            bail!("seeding: HTTP {}", response.status());
        }
    }
    println!("seeded {} events over {} contacts in {:.1} s", seed.len(), shape.contacts, seeding.elapsed().as_secs_f64());
    drop(seed);

    let ingest = Arc::new(std::sync::Mutex::new(Tally::default()));
    let reads = Arc::new(std::sync::Mutex::new(Tally::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acknowledged = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(shape.duration);

    // Readers: the lead list, best first, with and without a band filter.
    let mut readers = tokio::task::JoinSet::new();
    for reader in 0..shape.readers {
        let (http, reads, stop) = (http.clone(), reads.clone(), stop.clone());
        let url = format!("{}/api/v1/contacts?model=b2b&sort=-total&limit=50{}", server.base, if reader % 2 == 1 { "&band=hot" } else { "" });
        let key = server.key.clone();
        let every = Duration::from_secs_f64(shape.readers.max(1) as f64 / shape.read_rate.max(1) as f64);
        readers.spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                ticker.tick().await;
                let sent = Instant::now();
                let answer = match http.get(&url).bearer_auth(&key).send().await {
                    Ok(response) => {
                        let status = response.status();
                        let _ = response.bytes().await;
                        status.as_u16().to_string()
                    }
                    Err(_) => "error".to_string(),
                };
                if let Ok(mut reads) = reads.lock() {
                    reads.record(&answer, sent.elapsed());
                }
            }
        });
    }

    // Rescores: a new version every `rescore_every` seconds; each one's time to done.
    let rescores = {
        let (http, stop) = (http.clone(), stop.clone());
        let (base, key) = (server.base.clone(), server.key.clone());
        let every = Duration::from_secs(shape.rescore_every.max(1));
        let server_view = ChildView { base, key };
        tokio::spawn(async move {
            let mut done: Vec<Duration> = Vec::new();
            let mut failures = 0u64;
            let mut next = Instant::now() + every / 2;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if Instant::now() < next {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                next += every;
                let began = Instant::now();
                match server_view.rescore(&http).await {
                    Ok(()) => done.push(began.elapsed()),
                    Err(err) => {
                        failures += 1;
                        eprintln!("rescore: {err:#}");
                    }
                }
            }
            (done, failures)
        })
    };

    // Memory: the server's resident set every `sample_every` seconds, and the Rust heap in
    // use as the server reports it (live allocations; the rest of the resident set is
    // SQLite's caches, what the allocator keeps, stacks and the program).
    let sampler = {
        let stop = stop.clone();
        let every = Duration::from_secs(shape.sample_every.max(1));
        let (http, metrics_url, key) = (http.clone(), format!("{}/metrics", server.base), server.key.clone());
        tokio::spawn(async move {
            let heap_mib = || async {
                let text = http.get(&metrics_url).bearer_auth(&key).send().await.ok()?.text().await.ok()?;
                metric_value(&text, "leadscore_heap_allocated_bytes").map(|bytes| bytes / 1_048_576.0)
            };
            let mut samples: Vec<MemorySample> = Vec::new();
            let began = Instant::now();
            loop {
                let stopping = stop.load(std::sync::atomic::Ordering::Relaxed);
                if let Some(rss) = rss_mib(pid) {
                    samples.push(MemorySample { at: began.elapsed().as_secs_f64(), rss, heap: heap_mib().await });
                }
                if stopping {
                    return samples;
                }
                tokio::time::sleep(every).await;
            }
        })
    };

    // Ingest: one event a request at `rate` a second, at most 512 in flight (a slow
    // server slows the sender instead of growing its queue; the rate reached is printed).
    let in_flight = Arc::new(tokio::sync::Semaphore::new(512));
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / shape.rate.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let url = format!("{}/api/v1/events", server.base);
    let mut sent = 0u64;
    let mut senders = tokio::task::JoinSet::new();
    for i in shape.seed_events..total {
        if Instant::now() >= deadline {
            break;
        }
        ticker.tick().await;
        let permit = in_flight.clone().acquire_owned().await.context("the semaphore closed")?;
        let body = serde_json::to_vec(&ordered_event(i, shape.contacts, 1, start_ms))?;
        let (http, url, key, ingest, acknowledged) = (http.clone(), url.clone(), server.key.clone(), ingest.clone(), acknowledged.clone());
        senders.spawn(async move {
            let _permit = permit;
            let began = Instant::now();
            let answer = match http.post(&url).bearer_auth(&key).header("content-type", "application/json").body(body).send().await {
                Ok(response) => {
                    let status = response.status();
                    let _ = response.bytes().await;
                    if status.is_success() {
                        acknowledged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    status.as_u16().to_string()
                }
                Err(_) => "error".to_string(),
            };
            if let Ok(mut ingest) = ingest.lock() {
                ingest.record(&answer, began.elapsed());
            }
        });
        sent += 1;
        while senders.try_join_next().is_some() {}
    }
    while senders.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while readers.join_next().await.is_some() {}
    let (rescore_times, rescore_failures) = rescores.await.context("the rescore task failed")?;
    let samples = sampler.await.context("the memory sampler failed")?;

    // What the server counted as stored, against what it acknowledged.
    let metrics = http.get(format!("{}/metrics", server.base)).bearer_auth(&server.key).send().await?.text().await?;
    let stored: f64 = metric_value(&metrics, "leadscore_events_ingested_total").unwrap_or(0.0);
    let acknowledged = acknowledged.load(std::sync::atomic::Ordering::Relaxed);
    drop(server);

    println!(
        "soak for {:.0} s on {}: single-event ingest at {} req/s ({sent} sent, {:.0} req/s reached), {} lead-list reader(s) at {} req/s in all, a rescore every {} s over {} contacts; {}",
        elapsed.as_secs_f64(),
        database.describe(),
        shape.rate,
        sent as f64 / elapsed.as_secs_f64(),
        shape.readers,
        shape.read_rate,
        shape.rescore_every,
        shape.contacts,
        machine()
    );
    if let Ok(mut ingest) = ingest.lock() {
        println!("  {}", ingest.line("ingest"));
    }
    if let Ok(mut reads) = reads.lock() {
        println!("  {}", reads.line("lead list"));
    }
    let rescore_ms: Vec<String> = rescore_times.iter().map(|d| format!("{:.1} s", d.as_secs_f64())).collect();
    println!("  rescores: {} done ({}), {rescore_failures} failed", rescore_times.len(), rescore_ms.join(", "));
    println!("  events: {acknowledged} acknowledged during the soak, {stored:.0} stored by the server in all (seed {} + soak)", shape.seed_events);
    let rss: Vec<(f64, f64)> = samples.iter().map(|s| (s.at, s.rss)).collect();
    print_memory("server memory (RSS", "RSS over time (MiB)", &rss);
    let heap: Vec<(f64, f64)> = samples.iter().filter_map(|s| s.heap.map(|h| (s.at, h))).collect();
    print_memory("Rust heap in use (live allocations", "heap in use over time (MiB)", &heap);
    Ok(())
}

/// One memory sample of the soak: seconds since it began, resident set and Rust heap in
/// use (MiB; the heap is None when /metrics did not answer).
struct MemorySample {
    at: f64,
    rss: f64,
    heap: Option<f64>,
}

/// Prints a memory series: first, last, max, the means of the first and last quarters
/// (flat or growing), and every sample.
fn print_memory(what: &str, trace_title: &str, samples: &[(f64, f64)]) {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else { return };
    let max = samples.iter().map(|(_, m)| *m).fold(0.0, f64::max);
    let quarter = (samples.len() / 4).max(1);
    let mean = |s: &[(f64, f64)]| s.iter().map(|(_, m)| m).sum::<f64>() / s.len().max(1) as f64;
    println!(
        "  {what}, {} samples): first {:.0} MiB, last {:.0} MiB, max {:.0} MiB; mean of the first quarter {:.0} MiB, of the last {:.0} MiB",
        samples.len(),
        first.1,
        last.1,
        max,
        mean(&samples[..quarter]),
        mean(&samples[samples.len() - quarter..])
    );
    let trace: Vec<String> = samples.iter().map(|(t, m)| format!("{t:.0}s={m:.0}")).collect();
    println!("  {trace_title}: {}", trace.join(" "));
}

/// The sum of a metric's series in a Prometheus text page (every label set), or None when
/// the page has none.
fn metric_value(page: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = page
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .filter_map(|l| l.split_whitespace().last().and_then(|n| n.parse::<f64>().ok()))
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// What the rescore task needs of the child server.
struct ChildView {
    base: String,
    key: String,
}

impl ChildView {
    /// Publishes a new version and waits for its rescore to be done.
    async fn rescore(&self, http: &reqwest::Client) -> Result<()> {
        let id = publish_changed_model(http, &self.base, &self.key).await?;
        loop {
            let response = http.get(format!("{}/api/v1/models/b2b", self.base)).bearer_auth(&self.key).send().await?;
            if !response.status().is_success() {
                // Rate limited or busy: ask again.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            let model: Value = response.json().await?;
            let job = &model["rescore"];
            if job["id"].as_u64() != Some(id) {
                bail!("another rescore replaced job {id}");
            }
            match job["state"].as_str() {
                Some("done") => return Ok(()),
                Some("failed") | Some("superseded") => bail!("rescore job {id}: {job}"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}
