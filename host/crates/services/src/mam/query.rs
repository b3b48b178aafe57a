//! Archive queries (XEP-0313 §4): the `<query/>` form (`with`, `start`, `end`, and the
//! extended `before-id`, `after-id`, `ids`), XEP-0059 paging (`max`, `after`, `before`,
//! with `count` and `first index` in the answer), `<flip-page/>`, and the `<fin/>` that
//! ends the answer. Malformed requests get `bad-request`; a paging anchor that is not in
//! the result set gets `item-not-found`; `max` above the tenant's page limit is capped.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use heliograph_core::Core;

use crate::stanza::{self, Condition};
use crate::storage::{self, Account, ArchiveId, ArchivePage, ArchiveQuery, Page, PageAt};
use crate::xml::{Element, ns, parser};

/// Messages per page when the client does not say.
pub const DEFAULT_PAGE: usize = 50;

/// What answers a query: the result messages (without `to`), then the iq result.
pub struct Answer {
    pub messages: Vec<Element>,
    pub fin: Element,
}

/// The form fields a query accepts (the answer to a `<query/>` get, §4.1.1).
pub fn form() -> Element {
    let field = |var: &str, ty: &str| {
        Element::new("field", ns::DATA_FORMS)
            .with_attr("var", var)
            .with_attr("type", ty)
    };
    let form_type = field("FORM_TYPE", "hidden")
        .with_child(Element::new("value", ns::DATA_FORMS).with_text(ns::MAM));
    let x = Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "form")
        .with_child(form_type)
        .with_child(field("with", "jid-single"))
        .with_child(field("start", "text-single"))
        .with_child(field("end", "text-single"))
        .with_child(field("before-id", "text-single"))
        .with_child(field("after-id", "text-single"))
        .with_child(field("ids", "list-multi"));
    Element::new("query", ns::MAM).with_child(x)
}

/// Runs the query in `iq` on `owner`'s archive; results come from `archive_jid`.
pub async fn run(
    core: &Arc<Core>,
    owner: &Account,
    archive_jid: &str,
    iq: &Element,
    max_page: usize,
) -> Result<Answer, Condition> {
    let payload = iq.first_child().ok_or(Condition::BadRequest)?;
    let request = parse(payload, max_page.max(1))?;
    let store = core.storage.archive.clone();
    let (owner2, q) = (owner.clone(), request.query.clone());
    let page = storage::blocking(move || store.query(&owner2, &q))
        .await
        .map_err(|e| {
            tracing::error!(jid = %owner, error = %e, "archive query failed");
            Condition::InternalServerError
        })?;
    if page.anchor_missing {
        return Err(Condition::ItemNotFound);
    }
    Ok(answer(
        core,
        iq,
        payload.attr("queryid"),
        archive_jid,
        page,
        request.flip,
    ))
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub query: ArchiveQuery,
    pub flip: bool,
}

/// Reads a `<query/>` element.
pub fn parse(query: &Element, max_page: usize) -> Result<Request, Condition> {
    let mut q = ArchiveQuery::default();
    if let Some(x) = query.child("x", ns::DATA_FORMS) {
        if x.attr("type").is_some_and(|t| t != "submit") {
            return Err(Condition::BadRequest);
        }
        for field in x.children().filter(|f| f.is("field", ns::DATA_FORMS)) {
            let values: Vec<String> = field
                .children()
                .filter(|v| v.is("value", ns::DATA_FORMS))
                .map(|v| v.text().trim().to_string())
                .collect();
            let one = || match values.as_slice() {
                [v] => Ok(v.as_str()),
                _ => Err(Condition::BadRequest),
            };
            match field.attr("var").unwrap_or_default() {
                "FORM_TYPE" if one()? == ns::MAM => {}
                "with" => {
                    let jid = jid::Jid::new(one()?).map_err(|_| Condition::BadRequest)?;
                    q.with = Some(jid.to_bare().to_string());
                    q.with_resource = jid.resource().map(|r| r.to_string());
                }
                "start" => q.start_ms = Some(time_ms(one()?)?),
                "end" => q.end_ms = Some(time_ms(one()?)?),
                "after-id" => {
                    q.after_id = Some(ArchiveId::parse(one()?).ok_or(Condition::ItemNotFound)?)
                }
                "before-id" => {
                    q.before_id = Some(ArchiveId::parse(one()?).ok_or(Condition::ItemNotFound)?)
                }
                // Ids that cannot exist simply match nothing.
                "ids" => q.ids = Some(values.iter().filter_map(|v| ArchiveId::parse(v)).collect()),
                _ => return Err(Condition::BadRequest),
            }
        }
    }
    q.page = page(query.child("set", ns::RSM), max_page)?;
    Ok(Request {
        query: q,
        flip: query.has_child("flip-page", ns::MAM),
    })
}

/// XEP-0059 `<set/>`: `max` (capped), and `after` or `before`.
fn page(set: Option<&Element>, max_page: usize) -> Result<Page, Condition> {
    let Some(set) = set else {
        return Ok(Page {
            max: DEFAULT_PAGE.min(max_page),
            at: PageAt::First,
        });
    };
    let max = match set.child_text("max", ns::RSM) {
        Some(m) => m
            .trim()
            .parse::<usize>()
            .map_err(|_| Condition::BadRequest)?,
        None => DEFAULT_PAGE,
    }
    .min(max_page);
    let anchor = |s: &str| ArchiveId::parse(s.trim()).ok_or(Condition::ItemNotFound);
    let at = match (set.child("after", ns::RSM), set.child("before", ns::RSM)) {
        (Some(_), Some(_)) => return Err(Condition::BadRequest),
        (Some(a), None) => PageAt::After(anchor(&a.text())?),
        (None, Some(b)) if b.text().trim().is_empty() => PageAt::Last,
        (None, Some(b)) => PageAt::Before(anchor(&b.text())?),
        (None, None) => PageAt::First,
    };
    Ok(Page { max, at })
}

/// A XEP-0082 date-time in milliseconds since the epoch.
fn time_ms(s: &str) -> Result<u64, Condition> {
    let t = humantime::parse_rfc3339_weak(s).map_err(|_| Condition::BadRequest)?;
    Ok(t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0))
}

/// The result messages and the `<fin/>`.
fn answer(
    core: &Core,
    iq: &Element,
    queryid: Option<&str>,
    archive_jid: &str,
    page: ArchivePage,
    flip: bool,
) -> Answer {
    let limits = core.parser_limits();
    let first = page.messages.first().map(|m| m.id.to_string());
    let last = page.messages.last().map(|m| m.id.to_string());
    let mut messages: Vec<Element> = page
        .messages
        .iter()
        .filter_map(|m| {
            let stored = parser::parse_element(m.stanza.as_bytes(), ns::CLIENT, limits).ok()?;
            let stamp = UNIX_EPOCH + Duration::from_millis(m.id.ms());
            let forwarded = Element::new("forwarded", ns::FORWARD)
                .with_child(
                    Element::new("delay", ns::DELAY)
                        .with_attr("stamp", crate::time::xep82_millis(stamp)),
                )
                .with_child(stored);
            let result = Element::new("result", ns::MAM)
                .with_opt_attr("queryid", queryid.map(str::to_string))
                .with_attr("id", m.id.to_string())
                .with_child(forwarded);
            Some(
                Element::new("message", ns::CLIENT)
                    .with_attr("from", archive_jid)
                    .with_attr("id", crate::muc::new_id())
                    .with_child(result),
            )
        })
        .collect();
    if flip {
        messages.reverse();
    }
    let mut set = Element::new("set", ns::RSM);
    if let (Some(first), Some(last)) = (first, last) {
        let (first, last) = if flip { (last, first) } else { (first, last) };
        set.push_child(
            Element::new("first", ns::RSM)
                .with_attr("index", page.first_index.to_string())
                .with_text(first),
        );
        set.push_child(Element::new("last", ns::RSM).with_text(last));
    }
    set.push_child(Element::new("count", ns::RSM).with_text(page.count.to_string()));
    let mut fin = Element::new("fin", ns::MAM).with_child(set);
    if page.complete {
        fin.set_attr("complete", "true");
    }
    Answer {
        messages,
        fin: stanza::iq_result_with(iq, fin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(fields: &[(&str, &[&str])], set: Option<Element>) -> Element {
        let mut x = Element::new("x", ns::DATA_FORMS).with_attr("type", "submit");
        for (var, values) in fields {
            let mut f = Element::new("field", ns::DATA_FORMS).with_attr("var", *var);
            for v in *values {
                f.push_child(Element::new("value", ns::DATA_FORMS).with_text(*v));
            }
            x.push_child(f);
        }
        let mut q = Element::new("query", ns::MAM).with_child(x);
        if let Some(s) = set {
            q.push_child(s);
        }
        q
    }

    fn rsm(children: &[(&str, &str)]) -> Element {
        children
            .iter()
            .fold(Element::new("set", ns::RSM), |s, (n, t)| {
                s.with_child(Element::new(*n, ns::RSM).with_text(*t))
            })
    }

    #[test]
    fn filters_are_read() {
        let q = query(
            &[
                ("FORM_TYPE", &[ns::MAM]),
                ("with", &["Bob@X/phone"]),
                ("start", &["2026-01-01T00:00:00Z"]),
                ("end", &["2026-01-01T00:00:01.500Z"]),
                ("after-id", &["0000000000000010"]),
                ("ids", &["0000000000000011", "junk"]),
            ],
            None,
        );
        let r = parse(&q, 250).unwrap();
        assert_eq!(r.query.with.as_deref(), Some("bob@x"));
        assert_eq!(r.query.with_resource.as_deref(), Some("phone"));
        assert_eq!(r.query.end_ms.unwrap() - r.query.start_ms.unwrap(), 1500);
        assert_eq!(r.query.after_id, Some(ArchiveId(16)));
        assert_eq!(r.query.ids, Some(vec![ArchiveId(17)]));
        assert_eq!(
            r.query.page,
            Page {
                max: DEFAULT_PAGE,
                at: PageAt::First
            }
        );
    }

    #[test]
    fn malformed_forms_are_bad_requests() {
        for fields in [
            &[("FORM_TYPE", &["urn:xmpp:mam:1"][..])][..],
            &[("with", &["a@b", "c@d"][..])],
            &[("with", &["@"][..])],
            &[("start", &["yesterday"][..])],
            &[("colour", &["red"][..])],
        ] {
            assert_eq!(
                parse(&query(fields, None), 250),
                Err(Condition::BadRequest),
                "{fields:?}"
            );
        }
        let both = rsm(&[("after", "0000000000000001"), ("before", "")]);
        assert_eq!(
            parse(&query(&[], Some(both)), 250),
            Err(Condition::BadRequest)
        );
        let nan = rsm(&[("max", "lots")]);
        assert_eq!(
            parse(&query(&[], Some(nan)), 250),
            Err(Condition::BadRequest)
        );
    }

    #[test]
    fn paging_is_read_and_max_is_capped() {
        let r = parse(
            &query(&[], Some(rsm(&[("max", "100000"), ("before", "")]))),
            250,
        )
        .unwrap();
        assert_eq!(
            r.query.page,
            Page {
                max: 250,
                at: PageAt::Last
            }
        );
        let r = parse(
            &query(
                &[],
                Some(rsm(&[("max", "5"), ("after", "00000000000000ff")])),
            ),
            250,
        )
        .unwrap();
        assert_eq!(
            r.query.page,
            Page {
                max: 5,
                at: PageAt::After(ArchiveId(255))
            }
        );
        let r = parse(&query(&[], Some(rsm(&[("before", "not-an-id")]))), 250);
        assert_eq!(r, Err(Condition::ItemNotFound));
    }
}
