//! What counts as an e-mail address. Contacts are found by e-mail, so an address that is
//! not one (`not an email`, `n/a`) would become a contact nobody can reach; every way an
//! address comes in (API events, Segment calls, CSV and NDJSON imports) applies this one
//! rule, so an address one of them refuses is refused by all.

/// The longest address SMTP can carry (RFC 5321's path limit less the angle brackets).
const MAX_EMAIL_LENGTH: usize = 254;

/// Accepts `local@domain` (surrounding whitespace aside): one `@`, neither side empty, no
/// whitespace or control characters, a domain that neither starts nor ends with a dot, at
/// most 254 characters. Only the shape is judged: whether the mailbox exists is not
/// something an ingest can know.
pub fn check_email(text: &str) -> Result<(), String> {
    let address = text.trim();
    let refused = || Err(format!("{text:?} is not an email address (expected name@domain)"));
    if address.len() > MAX_EMAIL_LENGTH || address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refused();
    }
    match address.split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@') && !domain.starts_with('.') && !domain.ends_with('.') => {
            Ok(())
        }
        _ => refused(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_non_addresses() {
        for good in ["a@b.co", "First.Last+tag@example.com", " padded@example.com ", "user@localhost", "ünï@exämple.de"] {
            assert!(check_email(good).is_ok(), "{good}");
        }
        for bad in ["not an email", "", "@example.com", "user@", "a@b@c.com", "two words@example.com", "user@.com", "user@example.", "n/a"] {
            let err = check_email(bad).unwrap_err();
            assert!(err.contains("is not an email address"), "{bad}: {err}");
        }
        assert!(check_email(&format!("{}@example.com", "x".repeat(250))).is_err(), "too long for SMTP");
    }
}
