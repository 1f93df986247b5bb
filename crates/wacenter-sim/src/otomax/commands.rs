//! What resellers type (`S5.08123456789.1234`, `S.1234`, `TIKET.100000.1234`) and the texts
//! the simulator answers with.

use super::state::*;

pub(crate) fn display_name(r: &SimReseller) -> String {
    if r.name.is_empty() {
        format!("Reseller {}", r.code)
    } else {
        r.name.clone()
    }
}

pub(crate) fn rupiah(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// What a reseller's text means.
#[derive(Debug, PartialEq)]
pub(crate) enum Command {
    Purchase {
        product: String,
        destination: String,
        pin: String,
    },
    Balance {
        pin: String,
    },
    Ticket {
        amount: i64,
        pin: String,
    },
}

pub(crate) fn parse_command(text: &str) -> Option<Command> {
    let parts: Vec<&str> = text.trim().split('.').map(str::trim).collect();
    let is_pin = |p: &str| (4..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit());
    match parts.as_slice() {
        [s, pin] if s.eq_ignore_ascii_case("S") && is_pin(pin) => Some(Command::Balance {
            pin: pin.to_string(),
        }),
        [t, amount, pin] if t.eq_ignore_ascii_case("TIKET") && is_pin(pin) => {
            let amount = amount
                .parse::<i64>()
                .ok()
                .filter(|a| (10_000..=100_000_000).contains(a))?;
            Some(Command::Ticket {
                amount,
                pin: pin.to_string(),
            })
        }
        [product, dest, pin]
            if is_pin(pin)
                && product.len() <= 12
                && product
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && product.chars().all(|c| c.is_ascii_alphanumeric())
                && (6..=20).contains(&dest.len())
                && dest.chars().all(|c| c.is_ascii_digit()) =>
        {
            Some(Command::Purchase {
                product: product.to_ascii_uppercase(),
                destination: dest.to_string(),
                pin: pin.to_string(),
            })
        }
        _ => None,
    }
}

/// Price of a product code: the number in it, in thousands, plus a 150 margin (`S5` → 5,150).
pub(crate) fn price(product: &str) -> i64 {
    let n: i64 = product
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(1);
    n.saturating_mul(1000).saturating_add(150)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_as_resellers_type_them() {
        assert_eq!(
            parse_command("S5.08123456789.1234"),
            Some(Command::Purchase {
                product: "S5".into(),
                destination: "08123456789".into(),
                pin: "1234".into()
            })
        );
        assert_eq!(
            parse_command("s.1234"),
            Some(Command::Balance { pin: "1234".into() })
        );
        assert_eq!(
            parse_command("tiket.100000.1234"),
            Some(Command::Ticket {
                amount: 100_000,
                pin: "1234".into()
            })
        );
        assert_eq!(parse_command("halo kak"), None);
        assert_eq!(parse_command("S5.0812.1234"), None, "destination too short");
        assert_eq!(parse_command("S5.08123456789"), None, "no pin");
        assert_eq!(parse_command(""), None);
    }

    #[test]
    fn money_formatting() {
        assert_eq!(rupiah(1_000_000), "1.000.000");
        assert_eq!(rupiah(5150), "5.150");
        assert_eq!(rupiah(150), "150");
        assert_eq!(price("S5"), 5150);
        assert_eq!(price("TSEL100"), 100_150);
    }

    #[test]
    fn reseller_args() {
        let r = SimReseller::parse_arg("+62 812-3456-789=R001").unwrap();
        assert_eq!(
            (r.phone.as_str(), r.code.as_str()),
            ("628123456789", "R001")
        );
        assert!(SimReseller::parse_arg("628123").is_err());
        assert!(SimReseller::parse_arg("=R1").is_err());
    }
}
