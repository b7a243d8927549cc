//! A small real SMTP server that keeps what it receives, for tests.
//!
//! Tests of e-mail automations need to see the message a real SMTP client produced
//! (envelope, headers, encoding), not a mock's view of it, and must not depend on a mail
//! server being installed. It lives in the library, not under `tests/`, so the server's
//! integration tests can use it too.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// One message as the sink received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`), without angle brackets.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), without angle brackets.
    pub to: Vec<String>,
    /// The message as sent after `DATA`, dot-unstuffed, lines joined with CRLF.
    pub data: String,
}

/// An SMTP server on 127.0.0.1 that accepts every message and keeps it in memory.
///
/// It speaks just enough SMTP for lettre (greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET,
/// NOOP, QUIT); no TLS, no AUTH. Dropping it stops the server.
#[derive(Debug)]
pub struct SmtpSink {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    messages: Mutex<Vec<ReceivedMail>>,
    arrived: Notify,
}

impl Shared {
    /// A test that panicked while holding the lock must not hide the messages from the
    /// next assertion, so poisoning is ignored.
    fn messages(&self) -> MutexGuard<'_, Vec<ReceivedMail>> {
        self.messages.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SmtpSink {
    /// Binds 127.0.0.1 on a free port and serves in a background task.
    pub async fn start() -> std::io::Result<SmtpSink> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(SmtpSink { addr, shared, task })
    }

    /// Everything received so far, in order of arrival.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.shared.messages().clone()
    }

    /// Waits until at least `count` messages have arrived or `timeout` passes, and returns
    /// what arrived (fewer than `count` on timeout, so the test's assertion shows what is
    /// missing).
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before looking, so a message arriving in between still
            // wakes us.
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            {
                let messages = self.shared.messages();
                if messages.len() >= count {
                    return messages.clone();
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.messages();
            }
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Session errors (a client hanging up mid-message) only end that session.
                sessions.spawn(session(stream, Arc::clone(&shared)));
            }
            // Accept errors (e.g. out of file descriptors) are transient; keep serving.
            Err(_) => tokio::task::yield_now().await,
        }
        // Reap finished sessions so the set does not grow with every connection.
        while sessions.try_join_next().is_some() {}
    }
}

async fn reply<W: AsyncWrite + Unpin>(writer: &mut W, text: &str) -> std::io::Result<()> {
    writer.write_all(text.as_bytes()).await?;
    writer.flush().await
}

async fn session(stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    reply(&mut writer, "220 leadscore-sink ESMTP ready\r\n").await?;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let command = text.trim_end_matches(['\r', '\n']);
        let verb = command.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                reply(&mut writer, "250-leadscore-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 PIPELINING\r\n").await?;
            }
            "HELO" => reply(&mut writer, "250 leadscore-sink\r\n").await?,
            "MAIL" => match address_after(command, "FROM:") {
                Some(address) => {
                    from = Some(address);
                    to.clear();
                    reply(&mut writer, "250 OK\r\n").await?;
                }
                None => reply(&mut writer, "501 Syntax: MAIL FROM:<address>\r\n").await?,
            },
            "RCPT" => match (&from, address_after(command, "TO:")) {
                (None, _) => reply(&mut writer, "503 MAIL first\r\n").await?,
                (Some(_), Some(address)) => {
                    to.push(address);
                    reply(&mut writer, "250 OK\r\n").await?;
                }
                (Some(_), None) => reply(&mut writer, "501 Syntax: RCPT TO:<address>\r\n").await?,
            },
            "DATA" => {
                let Some(sender) = from.take().filter(|_| !to.is_empty()) else {
                    reply(&mut writer, "503 MAIL and RCPT first\r\n").await?;
                    continue;
                };
                reply(&mut writer, "354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let Some(data) = read_data(&mut reader).await? else {
                    return Ok(());
                };
                shared.messages().push(ReceivedMail { from: sender, to: std::mem::take(&mut to), data });
                shared.arrived.notify_waiters();
                reply(&mut writer, "250 OK queued\r\n").await?;
            }
            "RSET" => {
                from = None;
                to.clear();
                reply(&mut writer, "250 OK\r\n").await?;
            }
            "NOOP" => reply(&mut writer, "250 OK\r\n").await?,
            "QUIT" => {
                reply(&mut writer, "221 Bye\r\n").await?;
                return Ok(());
            }
            _ => reply(&mut writer, "502 Command not implemented\r\n").await?,
        }
    }
}

/// Reads the message after `DATA` up to the lone `.` line, undoing dot-stuffing.
/// `None` when the client hung up before the end.
async fn read_data<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> std::io::Result<Option<String>> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text == "." {
            return Ok(Some(lines.join("\r\n")));
        }
        lines.push(text.strip_prefix('.').unwrap_or(text).to_owned());
    }
}

/// `MAIL FROM:<a@b> SIZE=10` → `a@b`; tolerates a space after the colon.
fn address_after(command: &str, keyword: &str) -> Option<String> {
    let (_, rest) = command.split_once(char::is_whitespace)?;
    let rest = rest.trim_start();
    let head = rest.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = rest.get(keyword.len()..)?.trim_start();
    let address = match rest.strip_prefix('<') {
        Some(inner) => inner.split_once('>')?.0,
        None => rest.split_whitespace().next().unwrap_or_default(),
    };
    Some(address.to_owned())
}

impl ReceivedMail {
    /// The header block, up to the first empty line.
    fn header_lines(&self) -> impl Iterator<Item = &str> {
        self.data.split("\r\n").take_while(|line| !line.is_empty())
    }

    /// The value of the first header called `name`, unfolded, raw (not decoded).
    pub fn header(&self, name: &str) -> Option<String> {
        let mut value: Option<String> = None;
        for line in self.header_lines() {
            match &mut value {
                // A continuation line (starting with white space) belongs to the header.
                Some(v) if line.starts_with([' ', '\t']) => {
                    v.push_str(line);
                }
                Some(_) => break,
                None => {
                    if let Some((key, rest)) = line.split_once(':')
                        && key.trim().eq_ignore_ascii_case(name)
                    {
                        value = Some(rest.to_owned());
                    }
                }
            }
        }
        value.map(|v| v.trim().to_owned())
    }

    /// The `Subject` header, with RFC 2047 encoded words (`=?utf-8?b?...?=`,
    /// `=?utf-8?q?...?=`) decoded, as lettre encodes non-ASCII subjects.
    pub fn subject(&self) -> Option<String> {
        self.header("Subject").map(|raw| decode_encoded_words(&raw))
    }

    /// The body after the header block, with a `base64` or `quoted-printable`
    /// `Content-Transfer-Encoding` undone, so tests can compare non-ASCII text.
    pub fn body(&self) -> String {
        let raw = match self.data.split_once("\r\n\r\n") {
            Some((_, body)) => body,
            None => "",
        };
        let encoding = self.header("Content-Transfer-Encoding").unwrap_or_default().to_ascii_lowercase();
        match encoding.as_str() {
            "base64" => {
                let compact: String = raw.split_whitespace().collect();
                match STANDARD.decode(compact) {
                    Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    Err(_) => raw.to_owned(),
                }
            }
            "quoted-printable" => decode_quoted_printable(raw),
            _ => raw.to_owned(),
        }
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn decode_quoted_printable(raw: &str) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes[i + 1..].starts_with(b"\r\n") => i += 3, // soft line break
            b'=' if bytes[i + 1..].starts_with(b"\n") => i += 2,
            b'=' => match (bytes.get(i + 1).copied().and_then(hex_value), bytes.get(i + 2).copied().and_then(hex_value)) {
                (Some(hi), Some(lo)) => {
                    out.push((hi << 4) | lo);
                    i += 3;
                }
                _ => {
                    out.push(b'=');
                    i += 1;
                }
            },
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes RFC 2047 encoded words; white space between two encoded words is dropped, as
/// the RFC requires (long subjects are split into several words).
fn decode_encoded_words(raw: &str) -> String {
    let mut out = String::new();
    let mut pending_space = String::new();
    let mut last_was_word = false;
    let mut rest = raw;
    while !rest.is_empty() {
        let token_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (token, after) = rest.split_at(token_end);
        let space_end = after.find(|c: char| !c.is_whitespace()).unwrap_or(after.len());
        let (space, next) = after.split_at(space_end);
        match decode_word(token) {
            Some(decoded) => {
                if !last_was_word {
                    out.push_str(&pending_space);
                }
                out.push_str(&decoded);
                last_was_word = true;
            }
            None => {
                out.push_str(&pending_space);
                out.push_str(token);
                last_was_word = false;
            }
        }
        pending_space = space.to_owned();
        rest = next;
    }
    out
}

/// One `=?charset?encoding?text?=` word; `None` when `token` is not one. Any charset is
/// read as UTF-8, which is what lettre writes.
fn decode_word(token: &str) -> Option<String> {
    let inner = token.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut parts = inner.splitn(3, '?');
    let _charset = parts.next()?;
    let encoding = parts.next()?;
    let text = parts.next()?;
    let bytes = match encoding {
        "b" | "B" => STANDARD.decode(text).ok()?,
        "q" | "Q" => {
            let spaced = text.replace('_', " ");
            return Some(decode_quoted_printable(&spaced));
        }
        _ => return None,
    };
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(data: &str) -> ReceivedMail {
        ReceivedMail { from: String::new(), to: Vec::new(), data: data.to_owned() }
    }

    #[test]
    fn subjects_plain_folded_and_encoded() {
        assert_eq!(mail("Subject: Hello\r\nTo: x\r\n\r\nbody").subject().as_deref(), Some("Hello"));
        assert_eq!(mail("subject: Hello\r\n  again\r\n\r\n").subject().as_deref(), Some("Hello  again"));
        // "Grüße 🔥" and a second encoded word, folded.
        assert_eq!(mail("Subject: =?utf-8?b?R3LDvMOfZSDwn5Sl?=\r\n =?utf-8?b?IQ==?=\r\n\r\n").subject().as_deref(), Some("Grüße 🔥!"));
        assert_eq!(mail("Subject: Re: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_Ada?= now\r\n\r\n").subject().as_deref(), Some("Re: Grüße Ada now"));
        assert_eq!(mail("To: x\r\n\r\nSubject: not a header").subject(), None);
    }

    #[test]
    fn bodies_are_decoded() {
        assert_eq!(mail("Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=\r\n=C3=9Fe a=3Db").body(), "Grüße a=b");
        assert_eq!(mail("Content-Transfer-Encoding: base64\r\n\r\nR3LDvMOf\r\nZQ==").body(), "Grüße");
        assert_eq!(mail("Content-Transfer-Encoding: 7bit\r\n\r\nplain\r\n.line").body(), "plain\r\n.line");
    }

    #[test]
    fn envelope_addresses() {
        assert_eq!(address_after("MAIL FROM:<a@b> SIZE=3", "FROM:").as_deref(), Some("a@b"));
        assert_eq!(address_after("mail from: <a@b>", "FROM:").as_deref(), Some("a@b"));
        assert_eq!(address_after("RCPT TO:<>", "TO:").as_deref(), Some(""));
        assert_eq!(address_after("RCPT FROM:<a@b>", "TO:"), None);
        assert_eq!(address_after("RCPT", "TO:"), None);
        assert_eq!(address_after("MAIL ééé:<a@b>", "FROM:"), None);
    }
}
