//! Who may read a node (XEP-0060 §4.5 access models, as PEP applies them to the owner's
//! roster, and §4.1 affiliations): the owner always; an outcast never; a member or
//! publisher always (for `whitelist`, the whitelist is exactly them); otherwise `open`
//! anyone, `presence` contacts subscribed to the owner's presence, `roster` contacts in
//! one of the allowed roster groups.

use crate::storage::{Account, PepAffiliation, PepNode, Roster};

use super::config::{self, AccessModel};

/// Whether `requester` may see `node` of `owner`, whose roster is `roster`.
pub fn may_read(owner: &Account, roster: &Roster, node: &PepNode, requester: &Account) -> bool {
    if requester == owner {
        return true;
    }
    match affiliation(node, requester) {
        Some(PepAffiliation::Outcast) => return false,
        Some(PepAffiliation::Member | PepAffiliation::Publisher) => return true,
        None => {}
    }
    let item = roster.items.iter().find(|i| i.jid == requester.to_string());
    match config::access_model(node) {
        AccessModel::Open => true,
        AccessModel::Presence => item.is_some_and(|i| i.subscription.has_from()),
        AccessModel::Roster => {
            let allowed = config::roster_groups(node);
            item.is_some_and(|i| i.groups.iter().any(|g| allowed.contains(g)))
        }
        AccessModel::Whitelist => false,
    }
}

/// The affiliation the owner gave `who` on the node, if any.
pub fn affiliation(node: &PepNode, who: &Account) -> Option<PepAffiliation> {
    node.affiliations.get(&who.to_string()).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{RosterItem, Subscription};

    fn roster() -> Roster {
        let item = |jid: &str, sub, groups: &[&str]| RosterItem {
            jid: jid.into(),
            subscription: sub,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        };
        Roster {
            version: 1,
            items: vec![
                item("sub@a.test", Subscription::From, &[]),
                item("friend@a.test", Subscription::None, &["friends"]),
            ],
        }
    }

    fn node(model: &str) -> PepNode {
        let mut n = PepNode::default();
        n.config
            .insert(config::ACCESS_MODEL.into(), vec![model.into()]);
        n.config
            .insert(config::ROSTER_GROUPS.into(), vec!["friends".into()]);
        n
    }

    #[test]
    fn each_model_admits_whom_it_should() {
        let owner = Account::new("o", "a.test");
        let sub = Account::new("sub", "a.test");
        let friend = Account::new("friend", "a.test");
        let stranger = Account::new("x", "a.test");
        let r = roster();
        let can = |m: &str, who: &Account| may_read(&owner, &r, &node(m), who);
        assert!(can("open", &stranger));
        assert!(can("presence", &sub) && !can("presence", &friend) && !can("presence", &stranger));
        assert!(can("roster", &friend) && !can("roster", &sub));
        assert!(can("whitelist", &owner) && !can("whitelist", &sub));
    }

    #[test]
    fn affiliations_override_the_model() {
        let owner = Account::new("o", "a.test");
        let sub = Account::new("sub", "a.test");
        let member = Account::new("m", "a.test");
        let r = roster();
        let mut whitelist = node("whitelist");
        whitelist
            .affiliations
            .insert("m@a.test".into(), PepAffiliation::Member);
        assert!(may_read(&owner, &r, &whitelist, &member));
        assert!(!may_read(&owner, &r, &whitelist, &sub));
        let mut presence = node("presence");
        presence
            .affiliations
            .insert("sub@a.test".into(), PepAffiliation::Outcast);
        assert!(!may_read(&owner, &r, &presence, &sub));
        presence
            .affiliations
            .insert("sub@a.test".into(), PepAffiliation::Publisher);
        assert!(may_read(&owner, &r, &presence, &sub));
    }
}
