//! The `leadscore` command line: the server, the demo, imports, model tools, rescoring,
//! scoring one contact, and benchmarks.

mod bench;
mod config;
mod demo;
mod export;
#[cfg(test)]
mod golden;
mod import;
mod migrate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use leadscore_app::{Engine, system_clock};
use leadscore_core::Model;
use leadscore_server::AppState;
use leadscore_store::Store;
use leadscore_store_sqlite::SqliteStore;

// Ingest and rescoring allocate many small strings and maps; mimalloc handles that
// churn far better than the system allocator (measured in BENCHMARKS.md).
// `Cap` counts the bytes allocated and not yet freed (no limit is set): the heap gauge.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);
#[cfg(not(feature = "mimalloc"))]
#[global_allocator]
static GLOBAL: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

/// Every 5 s, the Rust heap in use (bytes allocated and not yet freed) as the gauge
/// `leadscore_heap_allocated_bytes`: beside the resident set it tells live allocations from
/// memory the allocator keeps and from SQLite's page caches (RELIABILITY.md, Soak).
fn report_heap_in_use() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            metrics::gauge!("leadscore_heap_allocated_bytes").set(GLOBAL.allocated() as f64);
        }
    });
}

#[derive(Parser)]
#[command(name = "leadscore", version, about = "Self-hosted lead scoring engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the data lives; every command that touches data takes these.
#[derive(Args, Clone, Debug, Default)]
pub struct DataArgs {
    /// Directory of the embedded SQLite database [default: ./leadscore-data]
    #[arg(long, env = "LEADSCORE_DATA", global = true)]
    data: Option<PathBuf>,
    /// Database URL: postgres://USER@HOST/DB, or sqlite://FILE
    #[arg(long, env = "LEADSCORE_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Configuration file [default: ./leadscore.toml if present]
    #[arg(long, env = "LEADSCORE_CONFIG", global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server
    Serve {
        #[command(flatten)]
        data: DataArgs,
        /// Address to listen on [default: 127.0.0.1:8080]
        #[arg(long, env = "LEADSCORE_ADDR")]
        addr: Option<String>,
    },
    /// Run a server with the example model and a generated demo data set
    #[command(mut_arg("data", |arg| arg.help("Directory of the embedded SQLite database [default: ./leadscore-demo]")))]
    Demo {
        #[command(flatten)]
        data: DataArgs,
        /// Address to listen on [default: 127.0.0.1:8080]
        #[arg(long, env = "LEADSCORE_ADDR")]
        addr: Option<String>,
        /// Number of demo contacts, with about 6.7 events per contact over the last 90 days
        #[arg(long, default_value_t = 5000)]
        contacts: usize,
        /// Generate the data and exit instead of serving
        #[arg(long)]
        no_serve: bool,
    },
    /// Import contacts (CSV or NDJSON), events (NDJSON or CSV) or outcomes (CSV)
    #[command(after_help = import::EXIT_STATUS)]
    Import {
        #[command(subcommand)]
        what: import::ImportCommand,
    },
    /// Export contacts (NDJSON or CSV) or events (NDJSON) in files `import` reads back
    Export {
        #[command(subcommand)]
        what: export::ExportCommand,
    },
    /// Validate or publish models
    Model {
        #[command(subcommand)]
        action: ModelCommand,
    },
    /// Store or list automations
    Automation {
        #[command(subcommand)]
        action: AutomationCommand,
    },
    /// Rescore every contact under the live models (or one), with progress
    Rescore {
        #[command(flatten)]
        data: DataArgs,
        /// Only this model
        #[arg(long)]
        model: Option<String>,
    },
    /// Show one contact's scores
    Score {
        #[command(flatten)]
        data: DataArgs,
        /// Contact id
        contact: String,
        /// As of this instant (RFC 3339)
        #[arg(long)]
        at: Option<String>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Copy a whole installation into another (empty) database, e.g. SQLite to PostgreSQL
    Migrate {
        /// The database to copy: sqlite://FILE-OR-DIR or postgres://…
        #[arg(long)]
        from: String,
        /// The empty database to copy into: sqlite://FILE-OR-DIR or postgres://…
        #[arg(long)]
        to: String,
        /// Print the verification as JSON
        #[arg(long)]
        json: bool,
    },
    /// Reports over recorded outcomes: does the score predict who buys?
    Report {
        #[command(flatten)]
        data: DataArgs,
        /// brackets (conversion by score bracket), accuracy (ROC AUC, top band, won vs lost),
        /// distribution (histogram, per band), sources (by a source attribute), feedback
        /// (ratings by band, sales cycle), speed (hot → qualified, speed to lead), compare
        /// (a shadow model beside the live model it shadows)
        what: ReportKind,
        /// The model to compare with (compare) [default: the one the shadow shadows]
        #[arg(long)]
        against: Option<String>,
        /// The model [default: the only live one]
        #[arg(long)]
        model: Option<String>,
        /// Outcomes from this instant (RFC 3339) [default: all]
        #[arg(long)]
        from: Option<String>,
        /// Outcomes before this instant (RFC 3339) [default: all]
        #[arg(long)]
        to: Option<String>,
        /// Bracket edges, comma-separated (brackets) [default: the model's bands, and deciles]
        #[arg(long)]
        edges: Option<String>,
        /// Histogram bins (distribution)
        #[arg(long, default_value_t = 10)]
        bins: usize,
        /// The source attribute (sources)
        #[arg(long, default_value = "source")]
        attribute: String,
        /// The speed-to-lead SLA (speed), e.g. 24h, 4h, 2d
        #[arg(long, default_value = "24h")]
        sla: String,
        /// Print JSON
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV
        #[arg(long)]
        csv: bool,
    },
    /// Try a candidate model against past outcomes: its reports beside the live model's,
    /// and how many contacts would change band
    Backtest {
        #[command(flatten)]
        data: DataArgs,
        /// The candidate model file (TOML or JSON)
        #[arg(long)]
        model: PathBuf,
        /// The live model to compare with [default: the candidate's name]
        #[arg(long)]
        live: Option<String>,
        /// Outcomes from this instant (RFC 3339)
        #[arg(long)]
        from: Option<String>,
        /// Outcomes before this instant (RFC 3339)
        #[arg(long)]
        to: Option<String>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Draft a rule model from the live predictive model's learned weights (integer points
    /// per attribute value and per event) and backtest it beside a live rule model
    Suggest {
        #[command(flatten)]
        data: DataArgs,
        /// The live rule model to compare with and take the bands from [default: the only one]
        #[arg(long)]
        against: Option<String>,
        /// Write the draft (TOML) to this file, to edit, backtest and publish
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Train a predictive model on the contacts whose deals closed (won vs lost, or
    /// qualified vs disqualified), show its holdout figures, and make it live when it is not
    /// worse than the live one
    Train {
        #[command(flatten)]
        data: DataArgs,
        /// What to predict: won (won vs lost) or qualified (qualified or won vs disqualified)
        #[arg(long, default_value = "won", value_parser = ["won", "qualified"])]
        target: String,
        /// Share of the closed contacts held out to evaluate the model
        #[arg(long, default_value_t = 0.2)]
        holdout: f64,
        /// Same data and seed give the same model
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Refuse below this many closed contacts
        #[arg(long, default_value_t = 500)]
        min_closed: usize,
        /// Also report a stratified k-fold AUC
        #[arg(long)]
        k_folds: Option<usize>,
        /// An attribute to leave out, e.g. one sales fill in after the call (repeatable)
        #[arg(long = "exclude", value_name = "ATTRIBUTE")]
        exclude: Vec<String>,
        /// A feature to keep even when it separates won from lost almost alone (repeatable)
        #[arg(long = "allow-leaky", value_name = "FEATURE")]
        allow_leaky: Vec<String>,
        /// Make the new version live even when it is worse than the live one
        #[arg(long)]
        live: bool,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Create API keys on the data directly, with no server running (or beside one)
    Key {
        #[command(subcommand)]
        action: KeyCommand,
    },
    /// Users of the web app (the first admin, and any other, with no server running)
    User {
        #[command(subcommand)]
        action: UserCommand,
    },
    /// Print the configuration in effect (defaults, leadscore.toml, LEADSCORE_* variables,
    /// flags) and where each value came from; secrets are not shown
    Config {
        #[command(flatten)]
        data: DataArgs,
        /// The address `serve` would listen on
        #[arg(long, env = "LEADSCORE_ADDR")]
        addr: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Run benchmarks and print figures (see BENCHMARKS.md)
    Bench(bench::BenchArgs),
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an admin key and print it, once: the way back in when the key the first
    /// start printed is lost. Other keys: POST /api/v1/keys with an admin key
    Create {
        #[command(flatten)]
        data: DataArgs,
        /// Make an admin key (every scope); the only kind this command makes
        #[arg(long, required = true)]
        admin: bool,
        /// The key's name, to tell it apart in GET /api/v1/keys
        #[arg(long, default_value = "admin (leadscore key create)")]
        name: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user who signs in to the web app with EMAIL; the password is asked for (or
    /// read from the first line of stdin when it is not a terminal)
    Add {
        #[command(flatten)]
        data: DataArgs,
        /// The e-mail the user signs in with
        email: String,
        /// admin, marketing or sales
        #[arg(long)]
        role: String,
        /// The name shown in the app
        #[arg(long)]
        name: Option<String>,
    },
    /// List the users (never their passwords)
    List {
        #[command(flatten)]
        data: DataArgs,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
}

/// A password from the terminal (not echoed, asked twice), or the first line of stdin.
fn read_password() -> Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
        let again = rpassword::prompt_password("Again: ").context("cannot read the password")?;
        if first != again {
            bail!("the two passwords differ; nothing was stored");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("cannot read the password from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

async fn user_command(action: UserCommand) -> Result<()> {
    match action {
        UserCommand::Add { data, email, role, name } => {
            let role = leadscore_store::Role::parse(&role.to_lowercase()).with_context(|| format!("role {role:?} is not admin, marketing or sales"))?;
            let password = read_password()?;
            let state = start_engine(&data, open_store(&data).await?).await?;
            let new = leadscore_app::users::NewUser { email, password, role, name };
            let user = leadscore_app::users::add_user(&state, new).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("added {} as {}; they sign in at / on the server", user.email, user.role.as_str());
            Ok(())
        }
        UserCommand::List { data, json } => {
            let state = start_engine(&data, open_existing_store(&data).await?).await?;
            let users = leadscore_app::users::list_users(&state).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                for user in &users {
                    println!(
                        "{:<32} {:<10} {}{}",
                        user.email,
                        user.role.as_str(),
                        user.name.as_deref().unwrap_or(""),
                        if user.disabled { "  (disabled)" } else { "" }
                    );
                }
            }
            Ok(())
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportKind {
    Brackets,
    /// Conversion by predictive score bracket, each contact scored as of its close
    Predictive,
    Accuracy,
    Distribution,
    Sources,
    Feedback,
    Speed,
    Compare,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Check a model file and list every problem
    Validate {
        /// The model file (TOML or JSON)
        file: PathBuf,
        /// Print the result (valid, or every problem) as JSON
        #[arg(long)]
        json: bool,
    },
    /// Publish a model file as a new version and rescore every contact
    Apply {
        #[command(flatten)]
        data: DataArgs,
        /// The model file (TOML or JSON)
        file: PathBuf,
        /// Publish as a shadow of this live model: it scores live traffic but fires no
        /// automations and is never sent out; compare with `leadscore report compare`
        #[arg(long, value_name = "LIVE_MODEL")]
        shadow_of: Option<String>,
    },
    /// Make a shadow model live: its rules become a new version of the model it shadows
    /// (rescored), and the shadow is deleted
    Promote {
        #[command(flatten)]
        data: DataArgs,
        /// The shadow model
        name: String,
    },
}

#[derive(Subcommand)]
enum AutomationCommand {
    /// Store every `[[automation]]` of a file (created or replaced by name); nothing is
    /// stored if any of them is invalid
    Apply {
        #[command(flatten)]
        data: DataArgs,
        /// The TOML file of `[[automation]]` tables
        file: PathBuf,
    },
    /// List the stored automations: trigger, filter, limits, actions, enabled
    List {
        #[command(flatten)]
        data: DataArgs,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime");
    match runtime.and_then(|runtime| runtime.block_on(run(cli))) {
        Ok(code) => code,
        // `{:#}`: the message and its context chain on one line. Not the Debug format
        // `main() -> Result` uses, which adds the backtrace anyhow captures when
        // RUST_BACKTRACE is set: noise for a user's mistake.
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LEADSCORE_LOG").unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn"));
    let json = std::env::var("LEADSCORE_LOG_FORMAT").is_ok_and(|f| f == "json");
    // Colours only for a person at a terminal: in a pipe, a file or journald they are
    // escape codes in the text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Opens the store the data arguments point at (creating it on first use): PostgreSQL for
/// a `postgres://` URL, else the embedded SQLite database.
pub async fn open_store(data: &DataArgs) -> Result<Arc<dyn Store>> {
    open_store_as(data, Open::CreateIfMissing).await
}

/// Opens the store for a command that reads (or works on) existing data: a SQLite
/// database that is not there is an error, not a new empty store — a mistyped --data, or
/// none in the wrong directory, would otherwise answer from nothing and leave a stray
/// `./leadscore-data` behind.
pub async fn open_existing_store(data: &DataArgs) -> Result<Arc<dyn Store>> {
    open_store_as(data, Open::Existing).await
}

#[derive(Clone, Copy, PartialEq)]
enum Open {
    CreateIfMissing,
    Existing,
}

async fn open_store_as(data: &DataArgs, open: Open) -> Result<Arc<dyn Store>> {
    let settings = config::Settings::load(data.config.as_deref())?;
    let url = data.database_url.clone().or(settings.database_url);
    let path = match url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let store = leadscore_store_postgres::PostgresStore::connect(&url, None)
                .await
                .with_context(|| format!("cannot open the PostgreSQL database {}", redact(&url)))?;
            tracing::debug!(url = %redact(&url), "opened PostgreSQL store");
            return Ok(Arc::new(store));
        }
        Some(url) => {
            let file = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .with_context(|| format!("unsupported database URL {:?}; use sqlite://FILE or postgres://…", redact(&url)))?;
            // A data directory (as --data takes) means the database file inside it.
            let path = PathBuf::from(file);
            if path.is_dir() { path.join("leadscore.db") } else { path }
        }
        None => data.data.clone().or(settings.data).unwrap_or_else(|| PathBuf::from("leadscore-data")).join("leadscore.db"),
    };
    if open == Open::Existing && !path.is_file() {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let shown = if dir.is_relative() && !dir.starts_with(".") { format!("./{}", dir.display()) } else { dir.display().to_string() };
        bail!("no leadscore data in {shown}; pass --data DIR or --database-url URL");
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let store = SqliteStore::open(&path).with_context(|| format!("cannot open the database {}", path.display()))?;
    tracing::debug!(path = %path.display(), "opened SQLite store");
    Ok(Arc::new(store))
}

/// A database URL without its password, for messages and logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The engine over `store`, configured by [`config::Config`] (defaults, then the
/// configuration file, then `LEADSCORE_*`).
pub async fn start_engine(data: &DataArgs, store: Arc<dyn Store>) -> Result<Arc<Engine>> {
    let config = config::Config::load(&config::Settings::load(data.config.as_deref())?)?;
    Engine::new(store, system_clock(), config.server.engine).await.context("cannot load the live models")
}

/// What serving needs around a running engine: the API's state and the pages' settings,
/// from the same configuration.
pub struct Http {
    pub state: Arc<AppState>,
    pub web: leadscore_web::WebConfig,
}

pub fn http_state(data: &DataArgs, engine: Arc<Engine>) -> Result<Http> {
    let config = config::Config::load(&config::Settings::load(data.config.as_deref())?)?;
    Ok(Http { state: AppState::with_engine(engine, config.server), web: config.web })
}

/// Where a value given by flag or variable came from: clap reads both into one field, so
/// a value equal to the variable's is taken to come from it.
fn flag_or_env(value: &str, variable: &str) -> config::Source {
    if std::env::var(variable).is_ok_and(|v| v == value) { config::Source::Environment } else { config::Source::Flag }
}

fn print_config(data: &DataArgs, addr: Option<String>, json: bool) -> Result<()> {
    use config::Source;
    let settings = config::Settings::load(data.config.as_deref())?;
    let config = config::Config::load(&settings)?;
    let store = match (&data.database_url, &settings.database_url, &data.data, &settings.data) {
        (Some(url), _, _, _) => (url.clone(), flag_or_env(url, "LEADSCORE_DATABASE_URL")),
        (None, Some(url), _, _) => (url.clone(), Source::File),
        (None, None, Some(dir), _) => (dir.join("leadscore.db").display().to_string(), flag_or_env(&dir.display().to_string(), "LEADSCORE_DATA")),
        (None, None, None, Some(dir)) => (dir.join("leadscore.db").display().to_string(), Source::File),
        (None, None, None, None) => ("leadscore-data/leadscore.db".to_string(), Source::Default),
    };
    let addr = match (addr, settings.addr) {
        (Some(addr), _) => {
            let source = flag_or_env(&addr, "LEADSCORE_ADDR");
            (addr, source)
        }
        (None, Some(addr)) => (addr, Source::File),
        (None, None) => ("127.0.0.1:8080".to_string(), Source::Default),
    };
    let admin_key = match (std::env::var("LEADSCORE_ADMIN_KEY").is_ok(), settings.admin_key.is_some()) {
        (true, _) => Some(Source::Environment),
        (false, true) => Some(Source::File),
        (false, false) => None,
    };
    let described = config.describe((&store.0, store.1), (&addr.0, addr.1), admin_key);
    if json {
        println!("{described}");
        return Ok(());
    }
    for (key, entry) in described.as_object().into_iter().flatten() {
        let value = match &entry["value"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "-".to_string(),
            other => other.to_string(),
        };
        println!("{key:<24} {value:<40} ({})", entry["from"].as_str().unwrap_or("?"));
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let done = match cli.command {
        Command::Serve { data, addr } => {
            let settings = config::Settings::load(data.config.as_deref())?;
            let state = start_engine(&data, open_store(&data).await?).await?;
            let addr = addr.or(settings.addr).unwrap_or_else(|| "127.0.0.1:8080".into());
            // Listening first: a start that fails (the port taken) must not use up the
            // one-time admin key, or the next start would print none.
            let listener = bind(&addr).await?;
            let admin_key = std::env::var("LEADSCORE_ADMIN_KEY").ok().or(settings.admin_key);
            match state.bootstrap_admin_key(admin_key.as_deref()).await? {
                Some(key) => eprintln!("\n  First start: the admin API key is\n\n    {key}\n\n  It is shown only this once; keep it safe.\n"),
                None if admin_key.is_none() => eprintln!(
                    "API keys exist already, so no admin key is printed (the first start did). Lost it? \
                     `leadscore key create --admin` (with this --data or --database-url) prints a new one, \
                     or start with LEADSCORE_ADMIN_KEY set to a key of your choice."
                ),
                None => {}
            }
            serve_on(http_state(&data, state)?, listener).await
        }
        Command::Demo { data, addr, contacts, no_serve } => demo::run(data, addr, contacts, no_serve).await,
        // Imports have an exit code of their own: 2 when rows were rejected.
        Command::Import { what } => return import::run(what).await,
        Command::Backtest { data, model, live, from, to, json } => {
            let text = std::fs::read_to_string(&model).with_context(|| format!("cannot read {}", model.display()))?;
            let candidate = leadscore_app::backtest::candidate_model(&text).map_err(|e| {
                let problems: Vec<String> = e.problems().into_iter().map(|p| format!("{}: {}", p.path, p.message)).collect();
                anyhow::anyhow!("{} is not a valid model:\n  {}", model.display(), problems.join("\n  "))
            })?;
            let state = start_engine(&data, open_existing_store(&data).await?).await?;
            let live_name = live.unwrap_or_else(|| candidate.name.clone());
            let (live, from, to) = leadscore_app::reports::resolve(&state, Some(&live_name), from.as_deref(), to.as_deref()).map_err(anyhow::Error::msg)?;
            let bar = progress_bar(0, "backtest");
            let started = std::time::Instant::now();
            let report = leadscore_app::backtest::run(&state, candidate, live, from, to, &mut |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .await?;
            bar.finish_and_clear();
            let report = serde_json::to_value(report)?;
            if json {
                println!("{report}");
            } else {
                print_backtest(&report, started.elapsed());
            }
            Ok(())
        }
        Command::Suggest { data, against, out, json } => {
            let state = start_engine(&data, open_existing_store(&data).await?).await?;
            let started = std::time::Instant::now();
            let suggested = leadscore_app::suggested::suggest(&state, against.as_deref()).await?;
            if let Some(out) = &out {
                std::fs::write(out, &suggested.model).with_context(|| format!("cannot write {}", out.display()))?;
            }
            if json {
                println!("{}", serde_json::to_value(&suggested)?);
            } else {
                print_suggested(&suggested, out.as_deref(), started.elapsed())?;
            }
            Ok(())
        }
        Command::Train { data, target, holdout, seed, min_closed, k_folds, exclude, allow_leaky, live, json } => {
            let state = start_engine(&data, open_existing_store(&data).await?).await?;
            let target = if target == "qualified" { leadscore_app::predictive::Target::Qualified } else { leadscore_app::predictive::Target::Won };
            let request = leadscore_app::predictive::TrainRequest {
                target,
                holdout: Some(holdout),
                seed: Some(seed),
                min_closed: Some(min_closed),
                k_folds,
                allow_leaky,
                exclude,
                live,
            };
            let bar = progress_bar(0, "reading closed contacts");
            let shown = bar.clone();
            let progress = std::sync::Arc::new(move |step: leadscore_app::predictive::TrainStep| match step {
                leadscore_app::predictive::TrainStep::Reading { done, of } => {
                    shown.set_length(of as u64);
                    shown.set_position(done as u64);
                }
                leadscore_app::predictive::TrainStep::Training(leadscore_predict::Progress::Boosting { tree, of }) => {
                    shown.set_message("boosted trees");
                    shown.set_length(of as u64);
                    shown.set_position(tree as u64);
                }
                leadscore_app::predictive::TrainStep::Training(other) => shown.set_message(format!("training: {other:?}")),
            });
            let version = leadscore_app::predictive::train(&state, request, progress).await?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&version)?);
            } else {
                print_predictive(&version);
            }
            Ok(())
        }
        Command::Report { data, what, against, model, from, to, edges, bins, attribute, sla, json, csv } => {
            let state = start_engine(&data, open_existing_store(&data).await?).await?;
            if let ReportKind::Compare = what {
                let model = model.context("compare needs --model SHADOW")?;
                if csv {
                    bail!("compare prints text or --json, not CSV");
                }
                let (candidate, live, from, to) =
                    leadscore_app::compare::resolve_pair(&state, &model, against.as_deref(), from.as_deref(), to.as_deref()).map_err(anyhow::Error::msg)?;
                let report = serde_json::to_value(leadscore_app::compare::compare(&state, &candidate, &live, from, to).await?)?;
                if json {
                    println!("{report}");
                } else {
                    let kind = if candidate.is_shadow() { "shadow" } else { "candidate" };
                    let title = format!("{} ({kind}) beside {} over {} contacts with outcomes", candidate.name, live.name, report["judged_contacts"]);
                    print_comparison(&report, &title, kind);
                    for note in report["notes"].as_array().into_iter().flatten() {
                        println!("note: {}", note.as_str().unwrap_or_default());
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            use leadscore_app::reports as r;
            // The command line reads every contact, as an API key does.
            let (everyone, range) = (leadscore_app::access::Reach::Everyone, r::ReportRange { model, from, to });
            match what {
                ReportKind::Brackets => {
                    let report = r::brackets(&state, &everyone, &range, edges.as_deref()).await?;
                    if json {
                        println!("{}", serde_json::to_value(&report)?);
                    } else if csv {
                        print!("{}", r::brackets_csv(&report));
                    } else {
                        print_brackets(&serde_json::to_value(&report)?);
                    }
                }
                ReportKind::Predictive => {
                    let report = r::predictive_brackets(&state, &everyone, range.from.as_deref(), range.to.as_deref(), edges.as_deref()).await?;
                    if json {
                        println!("{}", serde_json::to_value(&report)?);
                    } else if csv {
                        print!("{}", r::predictive_brackets_csv(&report));
                    } else {
                        let mut shown = serde_json::to_value(&report)?;
                        shown["model"] = serde_json::json!("predictive");
                        print_brackets(&shown);
                    }
                }
                ReportKind::Accuracy => {
                    let report = r::accuracy(&state, &everyone, &range).await?;
                    if json {
                        println!("{}", serde_json::to_value(&report)?);
                    } else if csv {
                        print!("{}", r::accuracy_csv(&report));
                    } else {
                        print_accuracy(&serde_json::to_value(&report)?);
                    }
                }
                ReportKind::Distribution | ReportKind::Sources | ReportKind::Feedback | ReportKind::Speed | ReportKind::Compare => {
                    // The reports as JSON values: the text output reads them by field name.
                    let (report, rows, columns): (serde_json::Value, &str, &[&str]) = match what {
                        ReportKind::Distribution => (
                            serde_json::to_value(r::distribution(&state, &everyone, &range, Some(bins.clamp(1, 200))).await?)?,
                            "histogram",
                            &["lower", "upper", "contacts"],
                        ),
                        ReportKind::Sources => (
                            serde_json::to_value(r::sources(&state, &everyone, &range, Some(&attribute)).await?)?,
                            "sources",
                            &["source", "contacts", "average_score", "won", "lost", "conversion"],
                        ),
                        ReportKind::Speed => (
                            serde_json::to_value(r::speed(&state, &everyone, &range, Some(&sla)).await?)?,
                            "speed",
                            &["owner", "hot", "contacted", "median_hours", "p90_hours", "sla_breaches"],
                        ),
                        _ => (serde_json::to_value(r::feedback(&state, &everyone, &range).await?)?, "ratings_by_band", &["band", "ratings", "average_rating"]),
                    };
                    if json {
                        println!("{report}");
                    } else if csv {
                        let rows: &[serde_json::Value] = report[rows].as_array().map_or(&[], Vec::as_slice);
                        print!("{}", r::rows_csv(rows, columns));
                    } else {
                        print_rows(&report, rows, columns);
                    }
                }
            }
            Ok(())
        }
        Command::Export { what } => export::run(what).await,
        Command::Model { action } => match action {
            ModelCommand::Validate { file, json } => validate_model(&file, json),
            ModelCommand::Apply { data, file, shadow_of } => apply_model(&data, &file, shadow_of).await,
            ModelCommand::Promote { data, name } => promote_model(&data, &name).await,
        },
        Command::Automation { action } => match action {
            AutomationCommand::Apply { data, file } => apply_automations(&data, &file).await,
            AutomationCommand::List { data, json } => list_automations(&data, json).await,
        },
        Command::Rescore { data, model } => {
            let state = start_engine(&data, open_existing_store(&data).await?).await?;
            let names: Vec<String> = match model {
                Some(name) => vec![name],
                None => state.models().iter().map(|m| m.name.clone()).collect(),
            };
            if names.is_empty() {
                bail!("no model is published; publish one with `leadscore model apply FILE`");
            }
            for name in names {
                rescore_with_progress(&state, &name).await?;
            }
            Ok(())
        }
        Command::Score { data, contact, at, json } => score(&data, &contact, at.as_deref(), json).await,
        Command::Migrate { from, to, json } => migrate::run(&from, &to, json).await,
        Command::Key { action: KeyCommand::Create { data, admin: _, name } } => {
            let state = start_engine(&data, open_existing_store(&data).await?).await?;
            let key = state.create_admin_key(&name).await.context("cannot store the new key")?;
            eprintln!("created the admin key {name:?}; it is shown only this once, keep it safe:");
            println!("{key}");
            Ok(())
        }
        Command::User { action } => user_command(action).await,
        Command::Config { data, addr, json } => print_config(&data, addr, json),
        Command::Bench(args) => bench::run(args).await,
    };
    done.map(|()| ExitCode::SUCCESS)
}

pub async fn serve(http: Http, addr: &str) -> Result<()> {
    serve_on(http, bind(addr).await?).await
}

async fn bind(addr: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))
}

/// Serves on a bound listener until Ctrl-C or SIGTERM, finishing the requests in flight.
async fn serve_on(http: Http, listener: tokio::net::TcpListener) -> Result<()> {
    let Http { state, web } = http;
    report_heap_in_use();
    let local = listener.local_addr()?;
    tracing::info!(%local, "leadscore is listening");
    eprintln!("leadscore is listening on http://{local}  (web app: /, API: /api/v1, health: /healthz, metrics: /metrics)");
    let shutdown = async {
        // Ctrl-C in a terminal, SIGTERM from systemd, Kubernetes or `kill`.
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let sigterm = async {
            match terminate.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm => {}
        }
        tracing::info!("shutting down: finishing requests in flight");
    };
    let pages = leadscore_web::router(state.engine.clone(), web);
    leadscore_server::serve_with(state, listener, shutdown, pages).await.context("the server stopped with an error")?;
    // The last handle of the store went with the server: the SQLite writer has committed
    // what it accepted.
    tracing::info!("leadscore stopped");
    eprintln!("leadscore stopped");
    Ok(())
}

fn validate_model(file: &std::path::Path, json: bool) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match Model::parse(&text) {
        Ok(model) => {
            if json {
                println!("{}", serde_json::json!({ "valid": true, "name": model.name }));
            } else {
                println!(
                    "{}: model {:?} is valid ({} fit rules, {} activity rules, {} bands)",
                    file.display(),
                    model.name,
                    model.fit.len(),
                    model.activity.len(),
                    model.bands.len()
                );
            }
            Ok(())
        }
        Err(err) => {
            let problems = err.problems();
            if json {
                println!("{}", serde_json::json!({ "valid": false, "problems": problems }));
            } else {
                eprintln!("{}: {} problem(s):", file.display(), problems.len());
                for p in &problems {
                    eprintln!("  {}: {}", if p.path.is_empty() { "(top)" } else { &p.path }, p.message);
                }
            }
            std::process::exit(1);
        }
    }
}

async fn apply_model(data: &DataArgs, file: &std::path::Path, shadow_of: Option<String>) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let model = match Model::parse(&text) {
        Ok(model) => model,
        Err(err) => {
            for p in err.problems() {
                eprintln!("  {}: {}", p.path, p.message);
            }
            bail!("{} is not a valid model; nothing was published", file.display());
        }
    };
    let name = model.name.clone();
    let state = start_engine(data, open_store(data).await?).await?;
    leadscore_app::models::check_new_name(&state, &name)?;
    if let Some(live) = leadscore_app::models::unchanged_version(&state, &name, &text, shadow_of.as_deref()).await? {
        eprintln!("{name} is unchanged: version {} is live with this text; nothing published", live.version);
        return Ok(());
    }
    let version = leadscore_app::models::store_version(&state, &model, &text, leadscore_core::Format::sniff(&text), shadow_of).await?;
    match &version.shadow_of {
        Some(live) => eprintln!("published {name} version {} as a shadow of {live}", version.version),
        None => eprintln!("published {name} version {}", version.version),
    }
    rescore_with_progress(&state, &name).await
}

async fn promote_model(data: &DataArgs, name: &str) -> Result<()> {
    let state = start_engine(data, open_existing_store(data).await?).await?;
    let version = leadscore_app::models::promote(&state, name).await?;
    eprintln!("promoted {name}: it is now {} version {}, and {name} is deleted", version.name, version.version);
    rescore_with_progress(&state, &version.name).await
}

async fn apply_automations(data: &DataArgs, file: &std::path::Path) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    // The whole file is validated before anything is stored, so a file is applied all or
    // nothing (a half-applied file would be hard to reason about).
    let automations = match leadscore_core::automation::Automation::parse_file(&text) {
        Ok(automations) => automations,
        Err(err) => {
            let problems = err.problems();
            eprintln!("{}: {} problem(s):", file.display(), problems.len());
            for p in &problems {
                eprintln!("  {}: {}", if p.path.is_empty() { "(top)" } else { &p.path }, p.message);
            }
            bail!("{} has invalid automations; nothing was stored", file.display());
        }
    };
    // The checks the API makes before storing (shadow models, webhook targets), also all
    // before anything is stored.
    let state = start_engine(data, open_store(data).await?).await?;
    let mut refused = 0;
    for automation in &automations {
        for p in leadscore_app::automations::refusals(&state, automation).await {
            eprintln!("  {:?}.{}: {}", automation.name, p.path, p.message);
            refused += 1;
        }
    }
    if refused > 0 {
        bail!("{} has {refused} problem(s) (above); nothing was stored", file.display());
    }
    let now = chrono::Utc::now().timestamp_millis();
    for automation in automations {
        let new = leadscore_store::NewAutomation { name: automation.name, definition: automation.definition, enabled: automation.enabled };
        let (record, created) = state.store.put_automation(new, now).await?;
        eprintln!("{} automation {:?}{}", if created { "created" } else { "replaced" }, record.name, if record.enabled { "" } else { " (disabled)" });
    }
    Ok(())
}

async fn list_automations(data: &DataArgs, json: bool) -> Result<()> {
    let store = open_existing_store(data).await?;
    let stats = store.run_stats(chrono::Utc::now().timestamp_millis()).await?;
    // As JSON values: the text output reads them by field name.
    let items: Vec<serde_json::Value> = store
        .list_automations()
        .await?
        .iter()
        .map(|record| serde_json::to_value(leadscore_app::automations::overview(record, stats.iter().find(|s| s.automation == record.name))))
        .collect::<Result<_, _>>()?;
    if json {
        println!("{}", serde_json::json!({ "automations": items }));
        return Ok(());
    }
    if items.is_empty() {
        println!("no automations; store some with `leadscore automation apply FILE`");
    }
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    for item in &items {
        let state = if item["enabled"].as_bool().unwrap_or(false) { "enabled" } else { "disabled" };
        println!("{} ({state})", text(&item["name"]));
        if let Some(problems) = item.get("problems") {
            println!("  no longer valid: {problems}");
            continue;
        }
        println!("  trigger  {}", text(&item["trigger"]));
        println!("  filter   {}", text(&item["filter"]));
        println!("  limits   {}", text(&item["limits"]));
        let actions: Vec<String> = item["actions"].as_array().map(|a| a.iter().map(text).collect()).unwrap_or_default();
        println!("  actions  {}", actions.join("; "));
        let last = item["last_fired_at"].as_str().unwrap_or("never");
        println!("  runs     {} in the last day, {} in the last week; last fired {last}", item["runs"]["last_day"], item["runs"]["last_week"]);
    }
    Ok(())
}

fn percent(value: &serde_json::Value) -> String {
    value.as_f64().map_or("-".to_string(), |x| format!("{:.1} %", x * 100.0))
}

fn print_brackets(report: &serde_json::Value) {
    println!("{} v{}: {} contacts with outcomes, {} closed", report["model"].as_str().unwrap_or("?"), report["version"], report["contacts"], report["closed"]);
    for table in report["tables"].as_array().into_iter().flatten() {
        println!("\nby {}", table["by"].as_str().unwrap_or("?"));
        println!("  {:<12} {:>10} {:>9} {:>10} {:>5} {:>5} {:>11}  95 % interval", "bracket", "label", "contacts", "qualified", "won", "lost", "conversion");
        for row in table["rows"].as_array().into_iter().flatten() {
            let bound = |v: &serde_json::Value| v.as_f64().map_or(String::new(), |x| format!("{x}"));
            let bracket = format!("{}..{}", bound(&row["lower"]), bound(&row["upper"]));
            let interval = match (row["wilson_low"].as_f64(), row["wilson_high"].as_f64()) {
                (Some(low), Some(high)) => format!("{:.1}–{:.1} %", low * 100.0, high * 100.0),
                _ => String::new(),
            };
            println!(
                "  {:<12} {:>10} {:>9} {:>10} {:>5} {:>5} {:>11}  {}",
                bracket,
                row["label"].as_str().unwrap_or(""),
                row["contacts"].to_string(),
                row["qualified"].to_string(),
                row["won"].to_string(),
                row["lost"].to_string(),
                percent(&row["conversion"]),
                interval
            );
        }
    }
    for warning in report["warnings"].as_array().into_iter().flatten() {
        println!("\nwarning: {}", warning.as_str().unwrap_or_default());
    }
}

/// A report's list as an aligned table, then its other figures and warnings.
fn print_rows(report: &serde_json::Value, rows: &str, columns: &[&str]) {
    println!("{} v{}", report["model"].as_str().unwrap_or("?"), report["version"]);
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let table: Vec<Vec<String>> = report[rows].as_array().into_iter().flatten().map(|row| columns.iter().map(|c| cell(&row[*c])).collect()).collect();
    print_table(columns, table);
    // The distribution's count per band: the figure its warnings are about.
    if let Some(bands) = report["bands"].as_array() {
        println!("\n  per band");
        let columns = ["band", "min", "contacts", "share"];
        print_table(&columns, bands.iter().map(|b| vec![cell(&b["band"]), cell(&b["min"]), cell(&b["contacts"]), percent(&b["share"])]).collect());
        println!();
    }
    if let Some(object) = report.as_object() {
        for (key, value) in object.iter().filter(|(k, _)| !["model", "version", rows, "warnings", "bands"].contains(&k.as_str())) {
            println!("  {key}: {value}");
        }
    }
    for warning in report["warnings"].as_array().into_iter().flatten() {
        println!("warning: {}", warning.as_str().unwrap_or_default());
    }
}

/// Rows of cells under their column names, right-aligned.
fn print_table(columns: &[&str], table: Vec<Vec<String>>) {
    let widths: Vec<usize> = columns.iter().enumerate().map(|(i, c)| table.iter().map(|r| r[i].chars().count()).chain([c.len()]).max().unwrap_or(0)).collect();
    let line = |cells: Vec<String>| cells.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect::<Vec<_>>().join("  ");
    println!("  {}", line(columns.iter().map(|c| c.to_string()).collect()));
    for row in table {
        println!("  {}", line(row));
    }
}

/// The draft (or where it was written), each learned weight with the rule it became, and
/// the backtest beside the live rules.
fn print_suggested(suggested: &leadscore_app::suggested::SuggestedModelView, out: Option<&std::path::Path>, elapsed: std::time::Duration) -> Result<()> {
    match out {
        Some(out) => {
            println!("the suggested rule model is in {} (edit it, then `leadscore backtest --model {}` or publish it)\n", out.display(), out.display())
        }
        None => println!("{}", suggested.model),
    }
    println!("learned weights of predictive model v{} as points:", suggested.version);
    for points in &suggested.points {
        let what = match (&points.level, &points.per) {
            (Some(level), _) => format!("{} = {level}", points.feature),
            (None, Some(per)) => format!("{} {per}", points.feature),
            (None, None) => points.feature.clone(),
        };
        println!("  {:>4}  {what}  →  {}", points.points, points.rule);
    }
    println!();
    print_backtest(&serde_json::to_value(&suggested.backtest)?, elapsed);
    for note in &suggested.notes {
        println!("\nnote: {note}");
    }
    Ok(())
}

fn print_backtest(report: &serde_json::Value, elapsed: std::time::Duration) {
    print_comparison(report, &format!("backtest over {} contacts with outcomes ({:.1?})", report["judged_contacts"], elapsed), "candidate");
    println!("\n{}", backtest_coverage(report));
}

/// Where every judged contact went: the band tables hold only the contacts a side scored.
fn backtest_coverage(report: &serde_json::Value) -> String {
    let (candidate, live) = (&report["candidate"], &report["live"]);
    let mut line = format!(
        "of the {} contacts with outcomes: the candidate scored {} ({} outside its segment), the live model {} ({} outside its segment)",
        report["judged_contacts"], candidate["scored_contacts"], candidate["outside_segment"], live["scored_contacts"], live["outside_segment"]
    );
    if report["erased_contacts"].as_u64().is_some_and(|n| n > 0) {
        line.push_str(&format!("; {} erased since", report["erased_contacts"]));
    }
    line
}

/// A candidate (backtested, or a shadow) beside the live model: accuracy, conversion by
/// band, band changes today.
fn print_comparison(report: &serde_json::Value, title: &str, candidate_label: &str) {
    let f = |v: &serde_json::Value, digits: usize| v.as_f64().map_or("-".to_string(), |x| format!("{x:.digits$}"));
    println!("{title}");
    println!("  {:<34} {:>12} {:>12}", "", candidate_label, "live");
    for (label, key, digits) in [
        ("ROC AUC at close", "roc_auc", 3),
        ("won deals in the top band", "won_in_top_band_share", 3),
        ("average score at close, won", "average_score_won", 1),
        ("average score at close, lost", "average_score_lost", 1),
    ] {
        println!("  {:<34} {:>12} {:>12}", label, f(&report["candidate"]["accuracy"][key], digits), f(&report["live"]["accuracy"][key], digits));
    }
    for (side, label) in [("candidate", candidate_label), ("live", "live")] {
        println!("\n{label} ({}): conversion by band", report[side]["model"].as_str().unwrap_or("?"));
        let table = &report[side]["brackets"]["tables"][0];
        for row in table["rows"].as_array().into_iter().flatten() {
            println!(
                "  {:<14} {:>6} contacts  {:>4} won  {:>4} lost  {:>8}",
                row["label"].as_str().unwrap_or("-"),
                row["contacts"].to_string(),
                row["won"].to_string(),
                row["lost"].to_string(),
                percent(&row["conversion"])
            );
        }
        for warning in report[side]["brackets"]["warnings"].as_array().into_iter().flatten() {
            println!("  warning: {}", warning.as_str().unwrap_or_default());
        }
    }
    let changes = &report["band_changes"];
    println!("\nbands today: {} of {} contacts would change band", changes["changed"], changes["contacts"]);
    for t in changes["transitions"].as_array().into_iter().flatten() {
        println!("  {} → {}: {}", t["from"].as_str().unwrap_or("?"), t["to"].as_str().unwrap_or("?"), t["contacts"]);
    }
}

fn print_accuracy(report: &serde_json::Value) {
    println!(
        "{} v{}: {} closed ({} won, {} lost)",
        report["model"].as_str().unwrap_or("?"),
        report["version"],
        report["closed"],
        report["won"],
        report["lost"]
    );
    println!("  ROC AUC of the score at close     {}", report["roc_auc"].as_f64().map_or("-".into(), |x| format!("{x:.3}")));
    println!("  won deals in the top band ({})   {}", report["top_band"].as_str().unwrap_or("-"), percent(&report["won_in_top_band_share"]));
    println!("  average score at close, won       {}", report["average_score_won"].as_f64().map_or("-".into(), |x| format!("{x:.1}")));
    println!("  average score at close, lost      {}", report["average_score_lost"].as_f64().map_or("-".into(), |x| format!("{x:.1}")));
}

/// Runs a rescore job to the end in this process, with a progress bar.
pub async fn rescore_with_progress(state: &Arc<Engine>, name: &str) -> Result<()> {
    let published = state.model(name).with_context(|| format!("no live model {name:?}"))?;
    let mut job = leadscore_app::models::create_claimed_job(state, name).await?;
    let bar = progress_bar(job.total, &format!("rescoring {name} v{}", published.version));
    let started = std::time::Instant::now();
    while leadscore_app::models::rescore_step(state, &mut job).await? {
        bar.set_position(job.done);
    }
    bar.finish_and_clear();
    eprintln!("rescored {} contacts under {name} v{} in {:.1?}", job.done, published.version, started.elapsed());
    Ok(())
}

/// A trained predictive version as a person reads it.
fn print_predictive(version: &leadscore_app::predictive::PredictiveVersionView) {
    let report = &version.report;
    let state = if version.live { "live" } else { "not live: the live version's holdout AUC is higher (--live to force)" };
    println!("predictive model v{} ({state}), {:?}, target {:?}", version.version, report.algorithm, report.target);
    println!(
        "  trained on {} closed contacts ({} positive), {} held out, in {:.1} s",
        report.rows,
        report.positives,
        report.holdout_rows,
        report.training_ms as f64 / 1000.0
    );
    println!("  holdout ROC AUC {:.3}, log loss {:.3}", report.auc, report.log_loss);
    println!(
        "  logistic regression AUC {:.3}, boosted trees AUC {:.3} ({} trees)",
        report.evaluation.logistic.auc, report.evaluation.boosted.auc, report.trees
    );
    for cv in [&report.evaluation.logistic.cv_auc, &report.evaluation.boosted.cv_auc].into_iter().flatten() {
        let folds: Vec<String> = cv.iter().map(|a| format!("{a:.3}")).collect();
        println!("  k-fold AUC: {}", folds.join(" "));
    }
    println!("  calibration (predicted → observed, contacts):");
    for bin in &report.calibration {
        println!(
            "    {:>4.0}–{:<4.0} % {:>5.1} % → {:>5.1} %  ({})",
            bin.lo * 100.0,
            bin.hi * 100.0,
            bin.mean_predicted * 100.0,
            bin.observed_rate * 100.0,
            bin.count
        );
    }
    println!("  {} features", report.features.len());
    for warning in &report.leakage {
        println!("  warning: {}", warning.message);
    }
    for skipped in &report.skipped_attributes {
        println!("  not used: {} ({})", skipped.attribute, skipped.reason);
    }
}

pub fn progress_bar(total: u64, message: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_string());
    bar
}

async fn score(data: &DataArgs, id: &str, at: Option<&str>, json: bool) -> Result<()> {
    let state = start_engine(data, open_existing_store(data).await?).await?;
    let at = at.map(leadscore_app::time::parse_time).transpose().map_err(anyhow::Error::msg)?;
    let contact = state.store.get_contact(id).await?.with_context(|| format!("no contact {id:?}"))?;
    let cards = leadscore_app::contacts::current_cards(&state, &contact, at).await?;
    let by_model = cards.iter().map(|(m, c)| (m.name.clone(), c.clone())).collect();
    let predictive = leadscore_app::predictive::score(&state, &contact, &by_model, at).await?;
    if json {
        let scores: serde_json::Map<String, serde_json::Value> = cards.iter().map(|(m, c)| (m.name.clone(), serde_json::json!(c))).collect();
        println!("{}", serde_json::json!({ "id": contact.id, "email": contact.email, "scores": scores, "predictive": predictive }));
        return Ok(());
    }
    println!("{} {}", contact.id, contact.email.as_deref().unwrap_or(""));
    if cards.is_empty() {
        println!("  no live model scores this contact");
    }
    for (model, c) in cards {
        println!(
            "  {:<12} fit {:>7}  activity {:>7}  total {:>7}  band {:<8} flames {}  grade {}  {}",
            model.name,
            c.fit,
            c.activity,
            c.total,
            c.band.as_deref().unwrap_or("-"),
            c.flames,
            c.grade.as_deref().unwrap_or("-"),
            c.quadrant.as_deref().unwrap_or("")
        );
    }
    if let Some(predictive) = predictive {
        println!("  predictive   {:>3} / 100 (probability {:.3}, version {})", predictive.score, predictive.probability, predictive.version);
        for reason in predictive.reasons.iter().take(5) {
            println!("    {:+.2}  {} = {}", reason.contribution, reason.feature, reason.value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every command, argument and flag says in --help what it is for.
    #[test]
    fn every_argument_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if !matches!(id, "help" | "version") && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path}: {id}"));
                }
            }
            for sub in command.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let mut command = Cli::command();
        command.build();
        let mut missing = Vec::new();
        walk(&command, "leadscore", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }
}
