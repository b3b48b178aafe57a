//! Conformance cases for [`crate::PepStore`]: nodes stored whole per account, listed by
//! name (configuration, items and affiliations intact), replaced, deleted, and gone with
//! the account.

use super::{Harness, acct, creds};
use crate::{PepAffiliation, PepItem, PepNode};

/// A node with `items` items (`i1`, `i2`, ...) and a configuration of two fields, one of
/// them multi-valued.
pub fn pep_node(name: &str, items: usize) -> PepNode {
    let mut node = PepNode {
        name: name.to_string(),
        ..Default::default()
    };
    node.config
        .insert("pubsub#access_model".into(), vec!["presence".into()]);
    node.config.insert(
        "pubsub#roster_groups_allowed".into(),
        vec!["friends".into(), "family \u{e9}".into()],
    );
    node.affiliations
        .insert("bob@a.test".into(), PepAffiliation::Member);
    node.affiliations
        .insert("eve@b.test".into(), PepAffiliation::Outcast);
    for i in 1..=items {
        node.items.push(PepItem {
            id: format!("i{i}"),
            payload: format!("<x xmlns='urn:example'>{i} &amp; more</x>"),
            publisher: "alice@a.test/phone".into(),
            stamp_ms: 1_700_000_000_000 + i as u64,
        });
    }
    node
}

pub fn pep_nodes_stored_whole_per_account(h: &Harness) {
    let s = &h.storage;
    let alice = acct("alice", "a.test");
    let al = acct("al", "a.test");
    s.users.create_user(&alice, &creds(1)).unwrap();
    assert_eq!(s.pep.node_names(&alice).unwrap(), Vec::<String>::new());
    assert_eq!(s.pep.node(&alice, "none").unwrap(), None);

    let bookmarks = pep_node("urn:xmpp:bookmarks:1", 3);
    s.pep.put_node(&alice, &bookmarks).unwrap();
    s.pep
        .put_node(
            &alice,
            &pep_node("eu.siacs.conversations.axolotl.devicelist", 1),
        )
        .unwrap();
    s.pep
        .put_node(&al, &pep_node("urn:xmpp:avatar:data", 1))
        .unwrap();
    assert_eq!(
        s.pep.node_names(&alice).unwrap(),
        vec![
            "eu.siacs.conversations.axolotl.devicelist".to_string(),
            "urn:xmpp:bookmarks:1".to_string()
        ]
    );
    // The other node sees the same node, items in order and configuration intact.
    assert_eq!(
        h.second.pep.node(&alice, "urn:xmpp:bookmarks:1").unwrap(),
        Some(bookmarks.clone())
    );

    // Replacing keeps only the new content.
    let mut replaced = bookmarks.clone();
    replaced.items.remove(0);
    replaced.items.push(replaced.items[0].clone());
    replaced.items.remove(0);
    replaced.config.clear();
    replaced.affiliations.remove("bob@a.test");
    s.pep.put_node(&alice, &replaced).unwrap();
    let read = s.pep.node(&alice, "urn:xmpp:bookmarks:1").unwrap().unwrap();
    assert_eq!(read, replaced);
    assert_eq!(
        read.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["i3", "i2"]
    );

    assert!(s.pep.delete_node(&alice, "urn:xmpp:bookmarks:1").unwrap());
    assert!(!s.pep.delete_node(&alice, "urn:xmpp:bookmarks:1").unwrap());
    assert_eq!(s.pep.node(&alice, "urn:xmpp:bookmarks:1").unwrap(), None);

    // A node name with a NUL is refused; nothing is written.
    assert!(s.pep.put_node(&alice, &pep_node("bad\0name", 0)).is_err());
    assert!(s.pep.put_node(&alice, &pep_node("", 0)).is_err());

    s.users.delete_user(&alice).unwrap();
    assert_eq!(s.pep.node_names(&alice).unwrap(), Vec::<String>::new());
    assert_eq!(
        s.pep.node_names(&al).unwrap(),
        vec!["urn:xmpp:avatar:data".to_string()]
    );
}
