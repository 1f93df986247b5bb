//! The seed's forwarding flags and the rule that decides whether a message goes to OtomaX.

use wacenter_config::ForwardingFlags;
use wacenter_proto::InboundMessage;

/// Why a message is not forwarded (a stable label for logs and metrics), or `None` to forward.
pub fn skip_reason(msg: &InboundMessage, flags: &ForwardingFlags) -> Option<&'static str> {
    if !flags.enabled {
        return Some("otomax_disabled");
    }
    if msg.from_me && !flags.outgoing {
        return Some("outgoing");
    }
    if !msg.from_me && !flags.incoming {
        return Some("incoming");
    }
    if msg.is_group && !flags.groups {
        return Some("group");
    }
    if msg.has_media && !flags.media {
        return Some("media");
    }
    if msg.text.trim().is_empty() {
        return Some("empty_text");
    }
    // A message the flags let through whose sender has no phone number is not skipped: it is
    // dead-lettered `no_phone_number` (the handler), so somebody sees it.
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use wacenter_proto::{PhoneNumber, Provider};

    fn msg() -> InboundMessage {
        InboundMessage {
            version: 1,
            provider: Provider::Gowa,
            account: "628987654321@s.whatsapp.net".into(),
            message_id: "ID1".into(),
            chat: "628123456789@s.whatsapp.net".into(),
            sender: Some(PhoneNumber::from_digits("628123456789").unwrap()),
            sender_name: "John".into(),
            timestamp: Utc::now(),
            text: "S5.08123456789.1234".into(),
            is_group: false,
            from_me: false,
            has_media: false,
            media_type: None,
            received_at: Utc::now(),
        }
    }

    const DEFAULTS: ForwardingFlags = ForwardingFlags {
        enabled: true,
        incoming: true,
        outgoing: false,
        groups: false,
        media: false,
    };

    #[test]
    fn seed_defaults() {
        assert_eq!(skip_reason(&msg(), &DEFAULTS), None);
        assert_eq!(
            skip_reason(
                &InboundMessage {
                    from_me: true,
                    ..msg()
                },
                &DEFAULTS
            ),
            Some("outgoing")
        );
        assert_eq!(
            skip_reason(
                &InboundMessage {
                    is_group: true,
                    ..msg()
                },
                &DEFAULTS
            ),
            Some("group")
        );
        assert_eq!(
            skip_reason(
                &InboundMessage {
                    has_media: true,
                    ..msg()
                },
                &DEFAULTS
            ),
            Some("media")
        );
        assert_eq!(
            skip_reason(
                &InboundMessage {
                    text: "  ".into(),
                    ..msg()
                },
                &DEFAULTS
            ),
            Some("empty_text")
        );
        assert_eq!(
            skip_reason(
                &InboundMessage {
                    sender: None,
                    ..msg()
                },
                &DEFAULTS
            ),
            None,
            "not skipped: the handler dead-letters it no_phone_number"
        );
    }

    #[test]
    fn every_flag_opens_its_door() {
        let all = ForwardingFlags {
            enabled: true,
            incoming: true,
            outgoing: true,
            groups: true,
            media: true,
        };
        let m = InboundMessage {
            from_me: true,
            is_group: true,
            has_media: true,
            ..msg()
        };
        assert_eq!(skip_reason(&m, &all), None);
        assert_eq!(
            skip_reason(
                &msg(),
                &ForwardingFlags {
                    incoming: false,
                    ..all
                }
            ),
            Some("incoming")
        );
        assert_eq!(
            skip_reason(
                &msg(),
                &ForwardingFlags {
                    enabled: false,
                    ..all
                }
            ),
            Some("otomax_disabled")
        );
        // Media without a caption has nothing for OtomaX to read.
        assert_eq!(
            skip_reason(
                &InboundMessage {
                    has_media: true,
                    text: "".into(),
                    ..msg()
                },
                &all
            ),
            Some("empty_text")
        );
    }
}
