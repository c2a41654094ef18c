//! The SMS/WhatsApp gateway's wire rules, in the shape of Twilio's
//! Programmable Messaging API (the one real API we speak; any provider with
//! a Twilio-compatible endpoint works, e.g. a self-hosted gateway): the
//! `Messages.json` request form, the `X-Twilio-Signature` of an inbound
//! request (base64 of HMAC-SHA1, keyed with the auth token, over the full
//! URL followed by every POST parameter's name and value in name order),
//! and the reply keywords a recipient answers an offer with.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The path of the Messages resource under the API's base URL.
pub fn messages_path(account_sid: &str) -> String {
    format!("/2010-04-01/Accounts/{account_sid}/Messages.json")
}

/// The form body of one outbound message (`whatsapp:` prefixed for
/// WhatsApp, as the API takes it).
pub fn message_form(from: &str, to: &str, body: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("To", to)
        .append_pair("From", from)
        .append_pair("Body", body)
        .finish()
}

/// `X-Twilio-Signature` of a POST to `url` with `params`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `given` is the signature of this request (constant time).
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], given: &str) -> bool {
    let want = signature(auth_token, url, params);
    want.len() == given.len()
        && want
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// What a reply asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `YA 123` (or `YES 123`): accept offer 123.
    Accept(u64),
    /// `TIDAK 123` (or `NO 123`): decline it.
    Decline(u64),
}

/// Reads a reply: a keyword in Bahasa Indonesia or English, any case, and
/// the offer's number; anything else is not a reply.
pub fn parse_reply(text: &str) -> Option<Reply> {
    let mut words = text.split_whitespace();
    let keyword = words.next()?.to_lowercase();
    let number: u64 = words.next()?.trim_start_matches('#').parse().ok()?;
    if words.next().is_some() || number == 0 {
        return None;
    }
    match keyword.as_str() {
        "ya" | "yes" | "y" => Some(Reply::Accept(number)),
        "tidak" | "no" | "n" | "tdk" => Some(Reply::Decline(number)),
        _ => None,
    }
}

/// Whether `s` is a phone number in E.164 (`+` and 7 to 15 digits).
pub fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_twilios_documented_example() {
        // Twilio's own worked example ("Validating Requests are coming from
        // Twilio"): token, URL, parameters and the signature it gives.
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let sig = signature("12345", url, &params);
        assert_eq!(sig, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert!(verify("12345", url, &params, &sig));
        assert!(!verify("12346", url, &params, &sig));
        assert!(!verify("12345", "https://example.com/other", &params, &sig));
    }

    #[test]
    fn reads_replies_and_nothing_else() {
        for (text, want) in [
            ("YA 123", Some(Reply::Accept(123))),
            ("ya 123", Some(Reply::Accept(123))),
            ("  Yes   #7 ", Some(Reply::Accept(7))),
            ("TIDAK 9", Some(Reply::Decline(9))),
            ("no 9", Some(Reply::Decline(9))),
            ("YA", None),
            ("YA 0", None),
            ("YA 12 13", None),
            ("MAYBE 12", None),
            ("YA -1", None),
            ("YA 99999999999999999999999", None),
            ("", None),
        ] {
            assert_eq!(parse_reply(text), want, "{text:?}");
        }
    }

    #[test]
    fn e164_numbers() {
        for (s, ok) in [
            ("+6281234567890", true),
            ("+12025550123", true),
            ("6281234567890", false),
            ("+0812345678", false),
            ("+62 812", false),
            ("+123456", false),
            ("+1234567890123456", false),
        ] {
            assert_eq!(is_e164(s), ok, "{s}");
        }
    }

    #[test]
    fn the_message_form_is_url_encoded() {
        assert_eq!(
            message_form("+15005550006", "whatsapp:+6281234567890", "YA 5 & go"),
            "To=whatsapp%3A%2B6281234567890&From=%2B15005550006&Body=YA+5+%26+go"
        );
    }
}
