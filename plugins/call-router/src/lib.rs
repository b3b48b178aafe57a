//! `call-router`: a Wasm-hosted component that hands out media endpoints (SFUs, media
//! servers) for rooms: each room gets the least-loaded endpoint of the configuration,
//! allocations are tracked in the key-value store and released on request. The protocol
//! (`urn:heliograph:call-router:0`) is described in README.md.

use std::collections::BTreeMap;

use heliograph_plugin_sdk::prelude::*;

pub const NS: &str = "urn:heliograph:call-router:0";
const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// Longest room name accepted (it becomes part of a key-value key).
const ROOM_MAX: usize = 200;

pub struct CallRouter;

/// One configured endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    id: String,
    url: String,
    region: String,
    capacity: u64,
}

impl Component for CallRouter {
    fn handle(stanza: Stanza) -> HandleResult {
        if !stanza.is_request() {
            return Ok(Vec::new());
        }
        let reply = match request(&stanza) {
            Ok(payload) => stanza.iq_result(payload),
            Err((ty, condition, text)) => error(&stanza, ty, condition, &text),
        };
        Ok(vec![reply.to_xml()])
    }

    fn init(_config: &str) -> Result<(), String> {
        let endpoints = endpoints()?;
        if endpoints.is_empty() {
            return Err("call-router: configure at least one endpoint (endpoints.ID.url)".into());
        }
        Ok(())
    }
}

heliograph_plugin_sdk::component!(CallRouter);

type Failure = (&'static str, &'static str, String);

fn request(stanza: &Stanza) -> Result<Option<Element>, Failure> {
    let el = stanza
        .element()
        .ok_or(("modify", "bad-request", "unreadable request".to_string()))?;
    let payload =
        el.elements()
            .next()
            .ok_or(("modify", "bad-request", "no payload".to_string()))?;
    if payload.ns != NS {
        return Err(("cancel", "service-unavailable", String::new()));
    }
    match (stanza.stanza_type.as_str(), payload.name.as_str()) {
        ("set", "allocate") => allocate(room(payload)?).map(Some),
        ("set", "release") => release(room(payload)?).map(|()| None),
        ("get", "status") => status().map(Some),
        _ => Err((
            "cancel",
            "feature-not-implemented",
            format!("no {} {}", stanza.stanza_type, payload.name),
        )),
    }
}

fn room(payload: &Element) -> Result<&str, Failure> {
    match payload.get_attr("room") {
        Some(r) if !r.is_empty() && r.len() <= ROOM_MAX && !r.chars().any(char::is_control) => {
            Ok(r)
        }
        _ => Err((
            "modify",
            "bad-request",
            "a 'room' attribute of 1-200 characters is required".into(),
        )),
    }
}

fn unavailable(e: impl std::fmt::Display) -> Failure {
    ("wait", "internal-server-error", format!("storage: {e}"))
}

fn endpoints() -> Result<Vec<Endpoint>, String> {
    let mut found: BTreeMap<String, Endpoint> = BTreeMap::new();
    for (key, value) in config::entries() {
        let Some(rest) = key.strip_prefix("endpoints.") else {
            continue;
        };
        let Some((id, field)) = rest.rsplit_once('.') else {
            continue;
        };
        let ep = found.entry(id.to_string()).or_insert_with(|| Endpoint {
            id: id.to_string(),
            url: String::new(),
            region: String::new(),
            capacity: 100,
        });
        match field {
            "url" => ep.url = value,
            "region" => ep.region = value,
            "capacity" => {
                ep.capacity = value
                    .parse()
                    .map_err(|_| format!("endpoints.{id}.capacity must be a number"))?
            }
            _ => {}
        }
    }
    found
        .into_values()
        .map(|ep| {
            if ep.url.is_empty() {
                Err(format!("endpoints.{}.url is missing", ep.id))
            } else {
                Ok(ep)
            }
        })
        .collect()
}

fn load_of(id: &str) -> Result<u64, Failure> {
    Ok(kv::get(&format!("load/{id}"))
        .map_err(unavailable)?
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

fn set_load(id: &str, load: u64) -> Result<(), Failure> {
    kv::set(&format!("load/{id}"), load.to_string().as_bytes()).map_err(unavailable)
}

fn endpoint_element(ep: &Endpoint, room: Option<&str>, load: u64) -> Element {
    let mut el = Element::new("endpoint", NS)
        .attr("id", &ep.id)
        .attr("url", &ep.url)
        .attr("load", &load.to_string())
        .attr("capacity", &ep.capacity.to_string());
    if !ep.region.is_empty() {
        el.set_attr("region", &ep.region);
    }
    if let Some(r) = room {
        el.set_attr("room", r);
    }
    el
}

/// The room's endpoint: the one it already has, else the least-loaded one with room left
/// (load relative to capacity; ties by id).
fn allocate(room: &str) -> Result<Element, Failure> {
    let eps = endpoints().map_err(|e| ("cancel", "internal-server-error", e))?;
    let key = format!("room/{room}");
    if let Some(id) = kv::get(&key)
        .map_err(unavailable)?
        .and_then(|v| String::from_utf8(v).ok())
        && let Some(ep) = eps.iter().find(|e| e.id == id)
    {
        return Ok(endpoint_element(ep, Some(room), load_of(&ep.id)?));
    }
    let mut best: Option<(&Endpoint, u64)> = None;
    for ep in &eps {
        let load = load_of(&ep.id)?;
        if load >= ep.capacity {
            continue;
        }
        let better = match best {
            None => true,
            // load/capacity < best_load/best_capacity, without floats.
            Some((b, bl)) => {
                (load as u128) * (b.capacity as u128) < (bl as u128) * (ep.capacity as u128)
            }
        };
        if better {
            best = Some((ep, load));
        }
    }
    let (ep, load) = best.ok_or((
        "wait",
        "resource-constraint",
        "every endpoint is full".to_string(),
    ))?;
    set_load(&ep.id, load + 1)?;
    kv::set(&key, ep.id.as_bytes()).map_err(unavailable)?;
    log::info("allocated", &[("room", room), ("endpoint", &ep.id)]);
    Ok(endpoint_element(ep, Some(room), load + 1))
}

fn release(room: &str) -> Result<(), Failure> {
    let key = format!("room/{room}");
    let id = kv::get(&key)
        .map_err(unavailable)?
        .and_then(|v| String::from_utf8(v).ok())
        .ok_or((
            "cancel",
            "item-not-found",
            format!("room {room:?} has no endpoint"),
        ))?;
    kv::delete(&key).map_err(unavailable)?;
    let load = load_of(&id)?;
    set_load(&id, load.saturating_sub(1))?;
    log::info("released", &[("room", room), ("endpoint", &id)]);
    Ok(())
}

fn status() -> Result<Element, Failure> {
    let eps = endpoints().map_err(|e| ("cancel", "internal-server-error", e))?;
    let mut el = Element::new("status", NS);
    for ep in &eps {
        el = el.child(endpoint_element(ep, None, load_of(&ep.id)?));
    }
    Ok(el)
}

fn error(stanza: &Stanza, ty: &str, condition: &str, text: &str) -> Element {
    let mut reply = stanza.error_reply(ty, condition);
    if !text.is_empty()
        && let Some(heliograph_plugin_sdk::xml::Node::Element(err)) = reply.children.last_mut()
    {
        err.children.push(heliograph_plugin_sdk::xml::Node::Element(
            Element::new("text", STANZAS).text(text),
        ));
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use heliograph_plugin_sdk::testing::FakeHost;

    const CONFIG: &str = r#"{"endpoints": {
        "eu-1": {"url": "wss://eu-1.media.example/ws", "capacity": 2, "region": "eu"},
        "us-1": {"url": "wss://us-1.media.example/ws", "capacity": 4}
    }}"#;

    fn iq(ty: &str, payload: &str) -> Stanza {
        Stanza {
            kind: StanzaKind::Iq,
            from: "alice@acme.test/phone".into(),
            to: "calls.acme.test".into(),
            stanza_type: ty.into(),
            id: "q".into(),
            domain: "calls.acme.test".into(),
            xml: format!(r#"<iq xmlns="jabber:client" type="{ty}" id="q">{payload}</iq>"#),
        }
    }

    fn call(ty: &str, payload: &str) -> Element {
        let out = CallRouter::handle(iq(ty, payload)).unwrap();
        Element::parse(&out[0]).unwrap()
    }

    fn allocate(room: &str) -> Element {
        call("set", &format!(r#"<allocate xmlns="{NS}" room="{room}"/>"#))
    }

    fn endpoint_of(reply: &Element) -> String {
        reply
            .find("endpoint", NS)
            .unwrap()
            .get_attr("id")
            .unwrap()
            .to_string()
    }

    #[test]
    fn least_loaded_relative_to_capacity_sticky_and_released() {
        let _host = FakeHost::new().config_json(CONFIG).install();
        assert!(CallRouter::init(CONFIG).is_ok());
        // eu-1 0/2 vs us-1 0/4: tie, by id -> eu-1; then us-1 (0/4 < 1/2); then us-1
        // (1/4 < 1/2); then eu-1 and us-1 tie at 1/2 -> eu-1.
        let order: Vec<String> = ["a", "b", "c", "d"]
            .iter()
            .map(|r| endpoint_of(&allocate(r)))
            .collect();
        assert_eq!(order, ["eu-1", "us-1", "us-1", "eu-1"]);
        // The same room keeps its endpoint.
        assert_eq!(endpoint_of(&allocate("a")), "eu-1");
        // eu-1 full (2/2): next goes to us-1 until it is full too.
        assert_eq!(endpoint_of(&allocate("e")), "us-1");
        assert_eq!(endpoint_of(&allocate("f")), "us-1");
        let full = allocate("g");
        assert_eq!(full.get_attr("type"), Some("error"));
        assert!(full.to_xml().contains("resource-constraint"));
        // Releasing frees a place.
        let r = call("set", &format!(r#"<release xmlns="{NS}" room="a"/>"#));
        assert_eq!(r.get_attr("type"), Some("result"));
        assert_eq!(endpoint_of(&allocate("g")), "eu-1");
        let again = call("set", &format!(r#"<release xmlns="{NS}" room="zzz"/>"#));
        assert!(again.to_xml().contains("item-not-found"));
        let status = call("get", &format!(r#"<status xmlns="{NS}"/>"#));
        let loads: Vec<_> = status
            .find("status", NS)
            .unwrap()
            .elements()
            .map(|e| {
                (
                    e.get_attr("id").unwrap().to_string(),
                    e.get_attr("load").unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            loads,
            [("eu-1".into(), "2".into()), ("us-1".into(), "4".into())]
        );
    }

    #[test]
    fn refuses_bad_config_and_requests() {
        let _host = FakeHost::new()
            .config_json(r#"{"endpoints": {"x": {"capacity": 3}}}"#)
            .install();
        assert!(CallRouter::init("").is_err());
        let _host = FakeHost::new().config_json(CONFIG).install();
        assert!(
            call("set", &format!(r#"<allocate xmlns="{NS}"/>"#))
                .to_xml()
                .contains("bad-request")
        );
        assert!(
            call("set", r#"<allocate xmlns="urn:other" room="a"/>"#)
                .to_xml()
                .contains("service-unavailable")
        );
    }
}
