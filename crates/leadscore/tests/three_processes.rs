//! Three leadscore processes on one PostgreSQL database (PRODUCT.md F28, issue 6): traffic
//! is interleaved across all three, one is killed with SIGKILL mid-way, and afterwards
//! the scores are those of one process, every automation fired exactly once per contact,
//! and every delivery reached the receiver (none lost). Needs LEADSCORE_TEST_POSTGRES_URL
//! (CI sets it); skipped with a notice otherwise.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const KEY: &str = "lsk_three_processes_admin";
const CONTACTS: usize = 40;

const MODEL: &str = r#"
name = "web"
[[bands]]
name = "hot"
min = 40
[[bands]]
name = "cold"
[[activity]]
name = "Pricing"
event = "page"
when = { property = "path", op = "eq", value = "/pricing" }
points = 10
[[activity]]
name = "Signup"
event = "Signed Up"
points = 5
"#;

/// Records the webhook-id of every request, then holds the answer (200) until released:
/// the test kills a process while every delivery is in flight.
struct Hold {
    released: Mutex<bool>,
    wake: std::sync::Condvar,
}

fn receiver() -> (String, Arc<Mutex<Vec<String>>>, Arc<Hold>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hold = Arc::new(Hold { released: Mutex::new(false), wake: std::sync::Condvar::new() });
    let (record, gate) = (seen.clone(), hold.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (record, gate) = (record.clone(), gate.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut id, mut length, mut whole_head) = (String::new(), 0usize, false);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if line == "\r\n" {
                        whole_head = true;
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if lower.starts_with("webhook-id:") {
                        id = line["webhook-id:".len()..].trim().to_string();
                    }
                    if let Some(value) = lower.strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                // A connection the killed process opened (or pooled) and never used closes
                // without a request: that is no delivery. A request whose head arrived
                // whole is one, and is recorded even without a webhook-id, so a missing
                // header fails the test.
                if !whole_head {
                    return;
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                record.lock().unwrap().push(id);
                let mut released = gate.released.lock().unwrap();
                while !*released {
                    released = gate.wake.wait(released).unwrap();
                }
                drop(released);
                let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            });
        }
    });
    (url, seen, hold)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server process, killed when dropped (also when the test fails).
struct Server(Child);

impl Server {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn serve(database_url: &str, port: u16) -> Server {
    Server(
        Command::new(env!("CARGO_BIN_EXE_leadscore"))
            .arg("serve")
            .env("LEADSCORE_DATABASE_URL", database_url)
            .env("LEADSCORE_ADDR", format!("127.0.0.1:{port}"))
            .env("LEADSCORE_ADMIN_KEY", KEY)
            .env("LEADSCORE_ALLOW_PRIVATE_WEBHOOKS", "1")
            .env("LEADSCORE_DELIVERY_BACKOFF", "1s")
            .env("LEADSCORE_DELIVERY_LEASE", "3s")
            .env("LEADSCORE_LOG", "warn")
            .env_remove("LEADSCORE_DATA")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn wait_until<T>(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(client: &reqwest::Client, url: String) -> Option<Value> {
    let response = client.get(url).bearer_auth(KEY).send().await.ok()?;
    response.status().is_success().then_some(())?;
    response.json().await.ok()
}

/// Drops the test schema with a connection of its own.
async fn drop_schema(url: &str, schema: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await.unwrap();
    drop(client);
    let _ = connection.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_one_database_one_killed() {
    let Some(url) = std::env::var("LEADSCORE_TEST_POSTGRES_URL").ok().filter(|u| !u.trim().is_empty()) else {
        println!("skipped: LEADSCORE_TEST_POSTGRES_URL is not set");
        return;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let schema = format!("three_{}_{nanos:x}", std::process::id());
    // The schema does not exist yet: naming it in the URL is enough (it is created).
    let separator = if url.contains('?') { '&' } else { '?' };
    let database_url = format!("{url}{separator}options=-csearch_path%3D{schema}");
    let (hook, received, hold) = receiver();
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(20)).build().unwrap();

    let ports = [free_port(), free_port(), free_port()];
    let mut processes: Vec<Option<Server>> = ports.iter().map(|port| Some(serve(&database_url, *port))).collect();
    let bases: Vec<String> = ports.iter().map(|port| format!("http://127.0.0.1:{port}")).collect();
    for base in &bases {
        wait_until("a server to start", Duration::from_secs(60), async || client.get(format!("{base}/healthz")).send().await.ok()).await;
    }

    let put = |path: &str, body: String, content_type: &str| {
        client.put(format!("{}{path}", bases[0])).bearer_auth(KEY).header("content-type", content_type.to_string()).body(body)
    };
    assert!(put("/api/v1/models/web", MODEL.into(), "application/toml").send().await.unwrap().status().is_success());
    let automation = format!(
        "name = \"Signup\"\ntrigger = {{ event = {{ name = \"Signed Up\" }} }}\nlimits = {{ max = 1, per = \"30d\" }}\nactions = [ {{ webhook = {{ url = \"{hook}\" }} }} ]\n"
    );
    assert!(put("/api/v1/automations/Signup", automation, "application/toml").send().await.unwrap().status().is_success());
    // Every process sees the model and the automation (each reloads them every 5 s; writes
    // use the versions in the database at once either way).
    for base in &bases {
        wait_until("the model and automation to be visible everywhere", Duration::from_secs(30), async || {
            let models = get(&client, format!("{base}/api/v1/models")).await?;
            let automations = get(&client, format!("{base}/api/v1/automations")).await?;
            (models.to_string().contains("\"web\"") && automations["automations"].as_array()?.len() == 1).then_some(())
        })
        .await;
    }

    // Each contact: two signups and four pricing pages, spread over the three processes
    // and sent concurrently, so one contact's events arrive at several processes at once.
    let mut events = Vec::new();
    for round in 0..6 {
        for contact in 0..CONTACTS {
            let (kind, name) = if round < 2 { ("track", "Signed Up") } else { ("page", "page") };
            let mut event = json!({ "type": kind, "userId": format!("u{contact:03}"), "messageId": format!("m{contact}-{round}"),
                "timestamp": format!("2026-11-20T10:{:02}:{:02}Z", round, contact % 60) });
            if kind == "track" {
                event["event"] = json!(name);
            } else {
                event["properties"] = json!({ "path": "/pricing" });
            }
            events.push(event);
        }
    }
    let alive: Arc<Mutex<Vec<bool>>> = Arc::new(Mutex::new(vec![true; 3]));
    let signups = 2 * CONTACTS;
    let mut tasks = tokio::task::JoinSet::new();
    for (index, event) in events.into_iter().enumerate() {
        if index == signups {
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
            // Mid-way, with every webhook in flight (the receiver holds them): kill the third
            // process (SIGKILL). The deliveries it had claimed must be taken over by the
            // others once its lease expires.
            wait_until("every webhook to be in flight", Duration::from_secs(60), async || (received.lock().unwrap().len() >= CONTACTS).then_some(())).await;
            let mut victim = processes[2].take().unwrap();
            victim.kill();
            alive.lock().unwrap()[2] = false;
            *hold.released.lock().unwrap() = true;
            hold.wake.notify_all();
        }
        let (client, bases, alive) = (client.clone(), bases.clone(), alive.clone());
        tasks.spawn(async move {
            // Sent to process index % 3; a dead or failing process → the next one (messageIds
            // make the resend safe).
            for step in 0..6 {
                let target = (index + step) % 3;
                if !alive.lock().unwrap()[target] && step < 3 {
                    continue;
                }
                let sent = client.post(format!("{}/api/v1/events", bases[target])).bearer_auth(KEY).json(&event).send().await;
                if sent.is_ok_and(|r| r.status().is_success()) {
                    return;
                }
            }
            panic!("no process accepted {event}");
        });
        if tasks.len() >= 16 {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }

    // Scores: what one process would give (2 × 5 + 4 × 10 = 50, hot).
    for contact in 0..CONTACTS {
        let read = get(&client, format!("{}/api/v1/contacts/u{contact:03}", bases[contact % 2])).await.unwrap();
        assert_eq!(read["scores"]["web"]["total"], 50.0, "{read}");
        assert_eq!(read["scores"]["web"]["band"], "hot");
    }
    // Runs: exactly one per contact (two signups each, at two processes at once: max = 1).
    let runs = wait_until("every contact's run", Duration::from_secs(60), async || {
        let listed = get(&client, format!("{}/api/v1/automations/runs?limit=1000", bases[0])).await?;
        let runs = listed["runs"].as_array()?.clone();
        (runs.len() >= CONTACTS).then_some(runs)
    })
    .await;
    let mut per_contact: BTreeMap<String, usize> = BTreeMap::new();
    for run in &runs {
        *per_contact.entry(run["contact"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(per_contact.len(), CONTACTS);
    assert!(per_contact.values().all(|n| *n == 1), "a duplicate firing: {per_contact:?}");

    // Deliveries: every one delivered (those the killed process held come back after
    // their lease), and the receiver saw every webhook-id.
    let delivered = wait_until("every delivery", Duration::from_secs(90), async || {
        let listed = get(&client, format!("{}/api/v1/deliveries?state=delivered&limit=1000", bases[1])).await?;
        let ids: BTreeSet<String> = listed["deliveries"].as_array()?.iter().map(|d| d["id"].as_str().unwrap().to_string()).collect();
        (ids.len() == CONTACTS).then_some(ids)
    })
    .await;
    let seen = received.lock().unwrap().clone();
    let seen_ids: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(seen_ids, delivered, "every delivery reached the receiver, under its webhook-id");
    // The killed process's deliveries were in flight (held by the receiver) when it died:
    // after their lease the others sent them again, under the same webhook-id, which is
    // how a receiver recognises a repeat.
    let repeats = seen.len() - seen_ids.len();
    println!("{} webhooks received for {} deliveries ({repeats} re-sent after the crash, same webhook-id)", seen.len(), delivered.len());

    for process in processes.iter_mut().flatten() {
        process.kill();
    }
    drop_schema(&url, &schema).await;
}
