//! Phone numbers and WhatsApp JIDs.
//!
//! OtomaX knows resellers by phone number in international form, digits only (`628123…`), while
//! WhatsApp names chats by JID: `<user>[.<agent>][:<device>]@<server>` where the server is
//! `s.whatsapp.net` (a person), `c.us` (WAHA's spelling of the same), `g.us` (a group) or `lid`
//! (a privacy id that is *not* a phone number).

use wacenter_proto::PhoneNumber;
/// Shortest and longest number accepted: E.164 allows at most 15 digits; anything under 6 is a
/// short code or garbage, never a reseller's phone.
pub use wacenter_proto::{PHONE_MAX_DIGITS as MAX_DIGITS, PHONE_MIN_DIGITS as MIN_DIGITS};

/// JID server of a person's WhatsApp account.
pub const PERSON_SERVER: &str = "s.whatsapp.net";
/// JID server of a group.
pub const GROUP_SERVER: &str = "g.us";
/// JID server of privacy ids (LIDs): opaque numbers that are not phone numbers.
pub const LID_SERVER: &str = "lid";

/// Turns what a user, OtomaX or a provider wrote into digits in international form, or `None` if
/// it is not a person's phone number.
///
/// - `+62 812-3456-789`, `(0812) 3456 789`, `0812.3456.789` → `628123456789` (with
///   `default_country_code` `62`): spaces, dashes, dots and parentheses are dropped, a leading
///   `+` is dropped, a single leading `0` (the national trunk prefix) becomes the country code.
/// - `+62 (0)812…`: the `(0)` people write after the country code is dropped.
/// - `0062812…`: `00` is the international call prefix and is dropped.
/// - JIDs `628123:12@s.whatsapp.net`, `628123@c.us` → the user part, without device or agent.
/// - `None` for an empty string, group (`@g.us`) and privacy (`@lid`) JIDs or any other server,
///   letters or other symbols, and fewer than [`MIN_DIGITS`] or more than [`MAX_DIGITS`] digits.
///
/// `default_country_code` may be written `62` or `+62`; if it is empty or not digits, a national
/// `0…` number cannot be made international and gives `None`.
pub fn normalize_phone(input: &str, default_country_code: &str) -> Option<PhoneNumber> {
    let input = input.trim();
    if input.is_empty() {
        return None;
    }
    if input.contains('@') {
        let server = jid_server(input)?;
        if !is_person_server(server) {
            return None;
        }
        let user = jid_user(input);
        // A JID user is plain digits in international form: anything else (a `+`, a leading
        // trunk `0`) means it is not a phone JID.
        if user.starts_with('0') || !user.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return check_length(user.to_owned());
    }

    let (international, rest) = match input.strip_prefix('+') {
        Some(rest) => (true, rest.replace("(0)", "")),
        None => (false, input.to_owned()),
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' | '\u{a0}' => {}
            _ => return None,
        }
    }
    if digits.is_empty() {
        return None;
    }
    if international {
        // `+0…` is no country code at all.
        if digits.starts_with('0') {
            return None;
        }
        return check_length(digits);
    }
    if let Some(rest) = digits.strip_prefix("00") {
        return check_length(rest.to_owned());
    }
    if let Some(national) = digits.strip_prefix('0') {
        let cc = default_country_code.trim();
        let cc = cc.strip_prefix('+').unwrap_or(cc);
        if cc.is_empty() || cc.starts_with('0') || !cc.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return check_length(format!("{cc}{national}"));
    }
    check_length(digits)
}

/// Every path above yields digits without a leading `0`: only the length is left to check.
fn check_length(digits: String) -> Option<PhoneNumber> {
    PhoneNumber::from_digits(digits).ok()
}

/// The user part of a JID, without the `:device` and `.agent` suffixes:
/// `628123.0:12@s.whatsapp.net` → `628123`. A string without `@` is returned the same way (its
/// device suffix stripped), so it also works on the bare `628123:12` some payloads carry.
pub fn jid_user(jid: &str) -> &str {
    let jid = jid.trim();
    let user = jid.split_once('@').map_or(jid, |(user, _)| user);
    let user = user.split_once(':').map_or(user, |(user, _)| user);
    // whatsmeow writes the agent as `.<number>`; only strip a numeric suffix so that a dotted
    // phone number typed by a person is not cut short.
    match user.rsplit_once('.') {
        Some((head, agent))
            if !agent.is_empty()
                && agent.bytes().all(|b| b.is_ascii_digit())
                && jid.contains('@') =>
        {
            head
        }
        _ => user,
    }
}

/// The server part of a JID (`s.whatsapp.net`, `g.us`, `lid`, …), or `None` if there is no `@`.
pub fn jid_server(jid: &str) -> Option<&str> {
    jid.trim().split_once('@').map(|(_, server)| server)
}

/// Whether the JID names a group chat (`…@g.us`).
pub fn is_group_jid(jid: &str) -> bool {
    jid_server(jid) == Some(GROUP_SERVER)
}

/// Whether the JID is a privacy id (`…@lid`), which does not reveal the phone number.
pub fn is_lid_jid(jid: &str) -> bool {
    jid_server(jid) == Some(LID_SERVER)
}

/// Whether the JID names a person by phone number (`@s.whatsapp.net` or `@c.us`).
pub fn is_person_jid(jid: &str) -> bool {
    jid_server(jid).is_some_and(is_person_server)
}

fn is_person_server(server: &str) -> bool {
    server == PERSON_SERVER || server == "c.us"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_inputs() {
        let cases = [
            ("628123456789", "628123456789"),
            ("08123456789", "628123456789"),
            ("+628123456789", "628123456789"),
            ("+62 812-3456-789", "628123456789"),
            ("+62 (0)812 3456 789", "628123456789"),
            ("(0812) 3456-789", "628123456789"),
            ("0812.3456.789", "628123456789"),
            ("  08123456789\n", "628123456789"),
            ("0062812345678", "62812345678"),
            ("628123456789@s.whatsapp.net", "628123456789"),
            ("628123456789:12@s.whatsapp.net", "628123456789"),
            ("628123456789.0:3@s.whatsapp.net", "628123456789"),
            ("628123456789@c.us", "628123456789"),
            ("16505551234", "16505551234"),
            ("123456", "123456"),
            ("123456789012345", "123456789012345"),
            ("0 1234", "621234"),
        ];
        for (input, want) in cases {
            assert_eq!(
                normalize_phone(input, "62").as_deref(),
                Some(want),
                "{input:?}"
            );
        }
    }

    #[test]
    fn rejected_inputs() {
        let cases = [
            "",
            "   ",
            "+",
            "0",
            "00",
            "12345",
            "1234567890123456",
            "+0812345678",
            "120363025246125486@g.us",
            "123456789012345@lid",
            "628123456789@broadcast",
            "status@broadcast",
            "628123456789@",
            "@s.whatsapp.net",
            "abc@s.whatsapp.net",
            "+628123@s.whatsapp.net",
            "6281abc23456",
            "62812345678x",
            "62+812345678",
            "++628123456789",
            "628-123-456-789-012-345",
            "0812345678901234567890",
            "٦٢٨١٢٣٤٥٦٧٨٩", // Arabic-Indic digits are not ASCII digits
            "628123456789 in 120363@g.us",
            "🙂",
            "628123456789:12",
            "628123456789@x@s.whatsapp.net",
            "08123456789@s.whatsapp.net",
        ];
        for input in cases {
            assert_eq!(normalize_phone(input, "62"), None, "{input:?}");
        }
    }

    #[test]
    fn the_country_code_comes_from_the_caller() {
        assert_eq!(
            normalize_phone("0612345678", "31").as_deref(),
            Some("31612345678")
        );
        assert_eq!(
            normalize_phone("0612345678", "+31").as_deref(),
            Some("31612345678")
        );
        assert_eq!(normalize_phone("0612345678", ""), None);
        assert_eq!(normalize_phone("0612345678", "x1"), None);
        assert_eq!(normalize_phone("0612345678", "0"), None);
        // Numbers already international never get it.
        assert_eq!(
            normalize_phone("+31612345678", "62").as_deref(),
            Some("31612345678")
        );
    }

    /// Properties over many generated inputs: no panic, output is digits within bounds, and
    /// normalizing twice changes nothing.
    #[test]
    fn properties_hold_over_generated_inputs() {
        let pieces = [
            "",
            "0",
            "00",
            "+",
            "62",
            "8",
            "123",
            "4567",
            " ",
            "-",
            "(",
            ")",
            "(0)",
            ".",
            ":",
            ":12",
            "@",
            "@s.whatsapp.net",
            "@g.us",
            "@lid",
            "@c.us",
            "a",
            "é",
            "\u{0}",
            "9999999999",
        ];
        let mut seen = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for d in ["", "8", "@s.whatsapp.net", "(0)"] {
                        let input = format!("{a}{b}{c}{d}");
                        seen += 1;
                        let Some(out) = normalize_phone(&input, "62") else {
                            continue;
                        };
                        assert!(
                            out.bytes().all(|b| b.is_ascii_digit()),
                            "{input:?} -> {out:?}"
                        );
                        assert!((MIN_DIGITS..=MAX_DIGITS).contains(&out.len()), "{input:?}");
                        assert!(!out.starts_with('0'), "{input:?} -> {out:?}");
                        assert_eq!(
                            normalize_phone(&out, "62").as_deref(),
                            Some(&*out),
                            "{input:?}"
                        );
                        let jid = format!("{out}@s.whatsapp.net");
                        assert_eq!(normalize_phone(&jid, "62").as_deref(), Some(&*out));
                        assert!(
                            !input.contains("@g.us") && !input.contains("@lid"),
                            "{input:?}"
                        );
                    }
                }
            }
        }
        assert!(seen > 50_000);
    }

    #[test]
    fn jid_helpers() {
        assert_eq!(jid_user("628123:12@s.whatsapp.net"), "628123");
        assert_eq!(jid_user("628123.0:12@s.whatsapp.net"), "628123");
        assert_eq!(jid_user("628123@s.whatsapp.net"), "628123");
        assert_eq!(jid_user("120363025246125486@g.us"), "120363025246125486");
        assert_eq!(jid_user("628123:5"), "628123");
        assert_eq!(jid_user("0812.3456"), "0812.3456");
        assert_eq!(jid_user(""), "");
        assert_eq!(jid_user("@"), "");

        assert!(is_group_jid("120363025246125486@g.us"));
        assert!(!is_group_jid("628123@s.whatsapp.net"));
        assert!(!is_group_jid("g.us"));
        assert!(is_lid_jid("123@lid"));
        assert!(!is_lid_jid("123@s.whatsapp.net"));
        assert!(is_person_jid("123@s.whatsapp.net"));
        assert!(is_person_jid("123@c.us"));
        assert!(!is_person_jid("123@g.us"));
        assert!(!is_person_jid("123"));
        assert_eq!(jid_server("a@b@g.us"), Some("b@g.us"));
        assert_eq!(jid_server("628123"), None);
    }
}
