//! A PEP node's configuration (XEP-0060 §16.4 `pubsub#node_config`, the fields PEP
//! needs): access model, how many items it keeps, whether it persists them, the roster
//! groups allowed; reading it from a stored node, checking `publish-options`
//! preconditions against it, and the owner's configuration form.

use std::collections::BTreeMap;

use crate::storage::PepNode;
use crate::xml::{Element, ns};

pub const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
pub const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
pub const ACCESS_MODEL: &str = "pubsub#access_model";
pub const MAX_ITEMS: &str = "pubsub#max_items";
pub const PERSIST_ITEMS: &str = "pubsub#persist_items";
pub const ROSTER_GROUPS: &str = "pubsub#roster_groups_allowed";

/// The fields a node may be configured with; anything else in a form is refused.
const KNOWN: [&str; 8] = [
    ACCESS_MODEL,
    MAX_ITEMS,
    PERSIST_ITEMS,
    ROSTER_GROUPS,
    "pubsub#send_last_published_item",
    "pubsub#deliver_notifications",
    "pubsub#notify_retract",
    "pubsub#title",
];

/// Who may see a node's items and get its notifications (XEP-0060 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessModel {
    Open,
    Presence,
    Roster,
    Whitelist,
}

impl AccessModel {
    pub fn parse(value: &str) -> Option<AccessModel> {
        match value {
            "open" => Some(AccessModel::Open),
            "presence" => Some(AccessModel::Presence),
            "roster" => Some(AccessModel::Roster),
            "whitelist" => Some(AccessModel::Whitelist),
            _ => None,
        }
    }
}

/// What a form says was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown node configuration field {0}")]
    UnknownField(String),
    #[error("invalid value for {0}")]
    InvalidValue(&'static str),
}

/// The defaults of a new PEP node (XEP-0163 §4.3: presence access, last item kept).
fn default_of(var: &str) -> Vec<String> {
    let one = |v: &str| vec![v.to_string()];
    match var {
        ACCESS_MODEL => one("presence"),
        MAX_ITEMS => one("1"),
        PERSIST_ITEMS => one("true"),
        "pubsub#send_last_published_item" => one("on_sub_and_presence"),
        "pubsub#deliver_notifications" | "pubsub#notify_retract" => one("true"),
        _ => vec![],
    }
}

/// The node's value of a field, or its default.
pub fn value(node: &PepNode, var: &str) -> Vec<String> {
    node.config
        .get(var)
        .cloned()
        .unwrap_or_else(|| default_of(var))
}

pub fn access_model(node: &PepNode) -> AccessModel {
    value(node, ACCESS_MODEL)
        .first()
        .and_then(|v| AccessModel::parse(v))
        .unwrap_or(AccessModel::Presence)
}

/// Items the node keeps: its `max_items` (`max` is the tenant's limit), capped to the
/// tenant's limit; a node that does not persist items keeps only the last.
pub fn max_items(node: &PepNode, limit: u32) -> usize {
    let limit = limit.max(1) as usize;
    if !is_true(value(node, PERSIST_ITEMS).first().map(String::as_str)) {
        return 1;
    }
    match value(node, MAX_ITEMS).first().map(String::as_str) {
        Some("max") | None => limit,
        Some(n) => n.parse::<usize>().unwrap_or(1).clamp(1, limit),
    }
}

pub fn roster_groups(node: &PepNode) -> Vec<String> {
    value(node, ROSTER_GROUPS)
}

fn is_true(v: Option<&str>) -> bool {
    matches!(v, Some("1" | "true"))
}

/// The normal form of a boolean field's value, so `1` and `true` compare equal.
fn normal(var: &str, values: Vec<String>) -> Vec<String> {
    if matches!(
        var,
        PERSIST_ITEMS | "pubsub#deliver_notifications" | "pubsub#notify_retract"
    ) {
        return values
            .iter()
            .map(|v| is_true(Some(v)).to_string())
            .collect();
    }
    values
}

/// The fields of a submitted data form (without `FORM_TYPE`), checked.
pub fn read_form(x: &Element) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    let mut fields = BTreeMap::new();
    for field in x.children().filter(|c| c.is("field", ns::DATA_FORMS)) {
        let Some(var) = field.attr("var") else {
            continue;
        };
        if var == "FORM_TYPE" {
            continue;
        }
        if !KNOWN.contains(&var) {
            return Err(ConfigError::UnknownField(var.to_string()));
        }
        let values: Vec<String> = field
            .children()
            .filter(|c| c.is("value", ns::DATA_FORMS))
            .map(|v| v.text())
            .collect();
        check(var, &values)?;
        fields.insert(var.to_string(), normal(var, values));
    }
    Ok(fields)
}

fn check(var: &str, values: &[String]) -> Result<(), ConfigError> {
    let first = values.first().map(String::as_str);
    let ok = match var {
        ACCESS_MODEL => first.and_then(AccessModel::parse).is_some(),
        MAX_ITEMS => first.is_some_and(|v| v == "max" || v.parse::<u32>().is_ok_and(|n| n > 0)),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidValue(match var {
            ACCESS_MODEL => ACCESS_MODEL,
            _ => MAX_ITEMS,
        }))
    }
}

/// `publish-options` preconditions (XEP-0060 §7.1.5): every field must equal the node's
/// value. Returns the first field that does not.
pub fn unmet_precondition<'a>(
    node: &PepNode,
    options: &'a BTreeMap<String, Vec<String>>,
) -> Option<&'a str> {
    options
        .iter()
        .find(|(var, want)| normal(var, value(node, var)) != **want)
        .map(|(var, _)| var.as_str())
}

/// The node's configuration as a form of type `form` (owner `configure` get) or
/// `result`.
pub fn form(node: &PepNode) -> Element {
    let mut x = Element::new("x", ns::DATA_FORMS).with_attr("type", "form");
    x.push_child(
        Element::new("field", ns::DATA_FORMS)
            .with_attr("var", "FORM_TYPE")
            .with_attr("type", "hidden")
            .with_child(Element::new("value", ns::DATA_FORMS).with_text(NODE_CONFIG)),
    );
    for var in KNOWN {
        let kind = match var {
            ACCESS_MODEL | "pubsub#send_last_published_item" => "list-single",
            PERSIST_ITEMS | "pubsub#deliver_notifications" | "pubsub#notify_retract" => "boolean",
            ROSTER_GROUPS => "list-multi",
            _ => "text-single",
        };
        let mut field = Element::new("field", ns::DATA_FORMS)
            .with_attr("var", var)
            .with_attr("type", kind);
        if var == ACCESS_MODEL {
            for option in ["open", "presence", "roster", "whitelist"] {
                field.push_child(
                    Element::new("option", ns::DATA_FORMS)
                        .with_child(Element::new("value", ns::DATA_FORMS).with_text(option)),
                );
            }
        }
        for v in value(node, var) {
            field.push_child(Element::new("value", ns::DATA_FORMS).with_text(v));
        }
        x.push_child(field);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_with(var: &str, v: &str) -> PepNode {
        let mut n = PepNode::default();
        n.config.insert(var.into(), vec![v.into()]);
        n
    }

    #[test]
    fn max_items_defaults_caps_and_max() {
        assert_eq!(max_items(&PepNode::default(), 50), 1);
        assert_eq!(max_items(&node_with(MAX_ITEMS, "max"), 50), 50);
        assert_eq!(max_items(&node_with(MAX_ITEMS, "1000"), 50), 50);
        assert_eq!(max_items(&node_with(MAX_ITEMS, "7"), 50), 7);
        let mut n = node_with(MAX_ITEMS, "7");
        n.config.insert(PERSIST_ITEMS.into(), vec!["false".into()]);
        assert_eq!(max_items(&n, 50), 1);
    }

    #[test]
    fn preconditions_compare_with_defaults_and_normal_booleans() {
        let node = node_with(ACCESS_MODEL, "open");
        let mut opts = BTreeMap::new();
        opts.insert(ACCESS_MODEL.to_string(), vec!["open".to_string()]);
        opts.insert(PERSIST_ITEMS.to_string(), vec!["true".to_string()]);
        assert_eq!(unmet_precondition(&node, &opts), None);
        opts.insert(MAX_ITEMS.to_string(), vec!["max".to_string()]);
        assert_eq!(unmet_precondition(&node, &opts), Some(MAX_ITEMS));
        assert_eq!(
            unmet_precondition(&PepNode::default(), &BTreeMap::new()),
            None
        );
    }
}
