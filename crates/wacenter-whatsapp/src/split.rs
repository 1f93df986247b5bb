//! Texts longer than a provider takes are sent as parts. OtomaX's price lists run to thousands
//! of characters; Meta takes 4,096 per message.
//!
//! [`split_text`] takes one part off the front: the longest prefix within the limit that ends
//! at a line break, else at a space, else (one unbroken word longer than the limit) exactly at
//! the limit. The separator it cut at is dropped. Splitting the rest the same way gives the
//! same parts as splitting the whole text at once, so a message can be sent part by part, each
//! part carrying the rest on to the next.

use std::borrow::Cow;

/// WhatsApp's own limit on a text message, which GOWA passes on.
pub const WHATSAPP_MAX_TEXT_CHARS: usize = 65_536;

/// The first part of `text` of at most `max_chars` characters, and the rest (`None` when the
/// text fits whole).
pub fn split_text(text: &str, max_chars: usize) -> (&str, Option<&str>) {
    let max_chars = max_chars.max(1);
    // Byte index just past the `max_chars`-th character, if the text is longer than that.
    let Some((limit, _)) = text.char_indices().nth(max_chars) else {
        return (text, None);
    };
    let window = &text[..limit];
    // A break right at the limit counts too: the part then fills the limit exactly.
    let at_break = |c: char| text[limit..].starts_with(c);
    let cut = if at_break('\n') {
        Some((limit, 1))
    } else if let Some(i) = window.rfind('\n').filter(|i| *i > 0) {
        Some((i, 1))
    } else if at_break(' ') {
        Some((limit, 1))
    } else {
        window.rfind(' ').filter(|i| *i > 0).map(|i| (i, 1))
    };
    let (first, rest) = match cut {
        Some((i, sep)) => (&text[..i], &text[i + sep..]),
        None => (window, &text[limit..]),
    };
    // Blank lines at a cut would end one part or begin the next with nothing to show.
    let rest = rest.trim_start_matches(['\n', ' ']);
    let trimmed = first.trim_end_matches(['\n', ' ']);
    let first = if trimmed.is_empty() { first } else { trimmed };
    (first, Some(rest).filter(|r| !r.is_empty()))
}

/// `text` in a form every provider takes: control characters other than line breaks and tabs
/// removed (OtomaX texts sometimes carry a stray NUL or bell), `\r\n` as `\n`, no blank start or
/// end. Providers refuse control characters and empty texts; the reseller loses nothing
/// readable.
pub fn sendable(text: &str) -> Cow<'_, str> {
    let clean = |c: char| !c.is_control() || c == '\n' || c == '\t';
    let trimmed = text.trim();
    if trimmed.len() == text.len() && !text.contains('\r') && text.chars().all(clean) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        trimmed
            .replace("\r\n", "\n")
            .chars()
            .filter(|c| clean(*c))
            .collect::<String>()
            .trim()
            .to_string(),
    )
}

/// Every part of `text`, in order (what [`split_text`] gives one at a time).
pub fn parts(text: &str, max_chars: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = Some(text);
    while let Some(text) = rest {
        let (part, next) = split_text(text, max_chars);
        out.push(part);
        rest = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_that_fits_is_one_part() {
        assert_eq!(split_text("S5 = 5.150", 10), ("S5 = 5.150", None));
        assert_eq!(parts("", 10), [""]);
    }

    #[test]
    fn lines_are_kept_whole_words_next_and_only_a_giant_word_is_cut() {
        let list = "S5 = 5.150\nS10 = 10.150\nS20 = 20.150";
        assert_eq!(
            parts(list, 24),
            ["S5 = 5.150\nS10 = 10.150", "S20 = 20.150"]
        );
        assert_eq!(
            parts("satu dua tiga empat", 9),
            ["satu dua", "tiga", "empat"]
        );
        assert_eq!(parts("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        // A break exactly at the limit: the part fills the limit.
        assert_eq!(parts("abcd\nefgh", 4), ["abcd", "efgh"]);
    }

    #[test]
    fn what_providers_refuse_is_cleaned_away() {
        assert!(matches!(sendable("Saldo Rp 1.000"), Cow::Borrowed(_)));
        assert_eq!(
            sendable("  Saldo\u{7} Rp 1.000\r\nTerima kasih\u{0}\n\n"),
            "Saldo Rp 1.000\nTerima kasih"
        );
        assert_eq!(sendable("a\tb"), "a\tb");
        // A part is never only blank lines.
        let text = format!("{}\n\n\n\n{}", "a".repeat(8), "b".repeat(8));
        assert_eq!(parts(&text, 10), ["aaaaaaaa", "bbbbbbbb"]);
    }

    #[test]
    fn characters_not_bytes_and_nothing_lost() {
        let text = "é".repeat(10) + "\n" + &"ü".repeat(10);
        let got = parts(&text, 12);
        assert_eq!(got, ["é".repeat(10), "ü".repeat(10)]);
        let list: String = (1..400)
            .map(|n| format!("S{n} TELKOMSEL {n}.000 = Rp {n}.150\n"))
            .collect();
        let got = parts(list.trim_end(), 4096);
        assert!(got.iter().all(|p| p.chars().count() <= 4096));
        assert_eq!(got.join("\n"), list.trim_end(), "whole and in order");
        // Prefix-stable: the rest split again gives the same parts.
        let (_, rest) = split_text(list.trim_end(), 4096);
        assert_eq!(parts(rest.unwrap(), 4096), got[1..]);
    }
}
