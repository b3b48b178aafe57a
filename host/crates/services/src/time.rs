//! XEP-0202 Entity Time, in UTC, formatted per XEP-0082.

use std::sync::Arc;
use std::time::SystemTime;

use crate::hooks::{Address, Feature, IqType, Registrar};
use crate::stanza;
use crate::xml::{Element, ns};

/// The `time` feature.
pub struct Time;

impl Feature for Time {
    fn name(&self) -> &'static str {
        "time"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        for ty in [IqType::Get, IqType::Set] {
            r.iq(ty, ns::TIME, &[Address::Host], |req| {
                crate::boxed(async move { handle(&req.iq) })
            });
        }
        r.disco_feature(Address::Host, ns::TIME);
    }
}

/// XEP-0082 date-time of a moment, in UTC with second precision (`2026-11-24T06:49:27Z`).
pub fn xep82(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// XEP-0082 date-time with millisecond precision.
pub fn xep82_millis(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Answers `urn:xmpp:time` gets.
pub fn handle(iq: &Element) -> Option<Element> {
    if stanza::stanza_type(iq) != "get" {
        return stanza::error_reply(iq, stanza::Condition::BadRequest, None);
    }
    let time = Element::new("time", ns::TIME)
        .with_child(Element::new("tzo", ns::TIME).with_text("+00:00"))
        .with_child(Element::new("utc", ns::TIME).with_text(xep82_millis(SystemTime::now())));
    Some(stanza::iq_result_with(iq, time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_xep82() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(xep82(t), "2023-11-14T22:13:20Z");
        assert_eq!(xep82_millis(t), "2023-11-14T22:13:20.123Z");
    }
}
