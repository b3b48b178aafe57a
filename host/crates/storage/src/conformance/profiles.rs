//! Conformance cases for [`crate::profiles`]: the vCard, private XML storage and the last
//! logout, with their limits, on every backend.

use super::{Harness, acct, creds};
use crate::profiles::{self, PrivateLimits, ProfileError};

/// A vCard within the limit is stored and read back (from a second handle too); one over
/// it is refused and the stored one stays; private storage is all or nothing under its
/// byte and namespace limits; the last logout round-trips; all of it goes with the
/// account.
pub fn profiles_bounded_and_deleted_with_the_account(h: &Harness) {
    let s = &h.storage;
    let alice = acct("alice", "p.test");
    let bob = acct("bob", "p.test");
    for a in [&alice, &bob] {
        s.users.create_user(a, &creds(1)).unwrap();
    }
    let data = s.account_data.as_ref();
    let card = "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>";
    profiles::put_vcard(data, &alice, card, 100).unwrap();
    let big = format!(
        "<vCard xmlns='vcard-temp'><FN>{}</FN></vCard>",
        "x".repeat(100)
    );
    assert!(matches!(
        profiles::put_vcard(data, &alice, &big, 100),
        Err(ProfileError::TooLarge { .. })
    ));
    assert_eq!(
        profiles::vcard(h.second.account_data.as_ref(), &alice)
            .unwrap()
            .as_deref(),
        Some(card)
    );
    assert_eq!(profiles::vcard(data, &bob).unwrap(), None);

    let limits = PrivateLimits {
        max_bytes: 200,
        max_namespaces: 2,
    };
    let entry = |ns: &str, xml: &str| (ns.to_string(), xml.to_string());
    profiles::put_private(data, &alice, &[entry("a:ns", "<a xmlns='a:ns'/>")], limits).unwrap();
    profiles::put_private(data, &alice, &[entry("b:ns", "<b xmlns='b:ns'/>")], limits).unwrap();
    assert!(matches!(
        profiles::put_private(data, &alice, &[entry("c:ns", "<c xmlns='c:ns'/>")], limits),
        Err(ProfileError::TooManyNamespaces { limit: 2 })
    ));
    let huge = format!("<b xmlns='b:ns'>{}</b>", "y".repeat(300));
    assert!(matches!(
        profiles::put_private(
            data,
            &alice,
            &[
                entry("a:ns", "<a xmlns='a:ns'>new</a>"),
                entry("b:ns", &huge)
            ],
            limits
        ),
        Err(ProfileError::TooLarge { .. })
    ));
    // Nothing of the refused write was kept.
    assert_eq!(
        profiles::private(data, &alice, "a:ns").unwrap().as_deref(),
        Some("<a xmlns='a:ns'/>")
    );
    profiles::put_private(
        data,
        &alice,
        &[entry("a:ns", "<a xmlns='a:ns'>v2</a>")],
        limits,
    )
    .unwrap();
    assert_eq!(
        profiles::private(h.second.account_data.as_ref(), &alice, "a:ns")
            .unwrap()
            .as_deref(),
        Some("<a xmlns='a:ns'>v2</a>")
    );
    assert_eq!(profiles::private(data, &bob, "a:ns").unwrap(), None);

    profiles::put_last_logout(data, &alice, 1_700_000_000, "gone").unwrap();
    let last = profiles::last_logout(data, &alice).unwrap().unwrap();
    assert_eq!(
        (last.at_secs, last.status.as_str()),
        (1_700_000_000, "gone")
    );
    assert_eq!(profiles::last_logout(data, &bob).unwrap(), None);

    s.users.delete_user(&alice).unwrap();
    assert_eq!(profiles::vcard(data, &alice).unwrap(), None);
    assert_eq!(profiles::private(data, &alice, "a:ns").unwrap(), None);
    assert_eq!(profiles::last_logout(data, &alice).unwrap(), None);
}
