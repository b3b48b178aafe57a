//! The presence subscription state machine of RFC 6121 §3 and Appendix A, as pure
//! functions: given one side's state for a contact and a subscription stanza, the new
//! state and what the server must do with the stanza. [`super::presence`] applies them to
//! both local rosters and performs the actions.
//!
//! One side's state is the subscription (`none`/`to`/`from`/`both`) plus the pending-out
//! (`ask`), pending-in and pre-approval flags of its roster item for the other side.

use crate::storage::{RosterItem, Subscription};

/// The four subscription-related presence types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

impl Kind {
    /// The kind for a presence `type` value, if it is a subscription type.
    pub fn parse(ty: &str) -> Option<Kind> {
        match ty {
            "subscribe" => Some(Kind::Subscribe),
            "subscribed" => Some(Kind::Subscribed),
            "unsubscribe" => Some(Kind::Unsubscribe),
            "unsubscribed" => Some(Kind::Unsubscribed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Subscribe => "subscribe",
            Kind::Subscribed => "subscribed",
            Kind::Unsubscribe => "unsubscribe",
            Kind::Unsubscribed => "unsubscribed",
        }
    }
}

/// One side's subscription state for one contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct State {
    pub subscription: Subscription,
    /// Pending out: this side asked to subscribe and got no answer yet.
    pub pending_out: bool,
    /// Pending in: the contact asked to subscribe and this side has not answered.
    pub pending_in: bool,
    /// This side pre-approved a subscription request from the contact (RFC 6121 §3.4).
    pub approved: bool,
}

impl State {
    /// The state recorded in a roster item.
    pub fn of(item: &RosterItem) -> State {
        State {
            subscription: item.subscription,
            pending_out: item.ask,
            pending_in: item.pending_in,
            approved: item.approved,
        }
    }

    /// Writes the state into a roster item (other fields unchanged).
    pub fn apply_to(self, item: &mut RosterItem) {
        item.subscription = self.subscription;
        item.ask = self.pending_out;
        item.pending_in = self.pending_in;
        item.approved = self.approved;
    }

    fn with_to(mut self) -> State {
        self.subscription = match self.subscription {
            Subscription::None | Subscription::To => Subscription::To,
            Subscription::From | Subscription::Both => Subscription::Both,
        };
        self
    }

    fn without_to(mut self) -> State {
        self.subscription = match self.subscription {
            Subscription::None | Subscription::To => Subscription::None,
            Subscription::From | Subscription::Both => Subscription::From,
        };
        self
    }

    fn with_from(mut self) -> State {
        self.subscription = match self.subscription {
            Subscription::None | Subscription::From => Subscription::From,
            Subscription::To | Subscription::Both => Subscription::Both,
        };
        self
    }

    fn without_from(mut self) -> State {
        self.subscription = match self.subscription {
            Subscription::None | Subscription::From => Subscription::None,
            Subscription::To | Subscription::Both => Subscription::To,
        };
        self
    }
}

/// What the sender's server does with a subscription stanza its user sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outbound {
    /// The sender's new state for the contact.
    pub state: State,
    /// Route the stanza to the contact's server.
    pub route: bool,
}

/// What the recipient's server does with a subscription stanza from a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inbound {
    /// The recipient's new state for the sender.
    pub state: State,
    /// Deliver the stanza to the recipient's available resources.
    pub deliver: bool,
    /// Answer `subscribed` on the recipient's behalf (already subscribed, or pre-approved).
    pub auto_subscribed: bool,
}

/// RFC 6121 Appendix A.2.1, A.3.1, A.4.1, A.5.1 (outbound), with pre-approval (§3.4).
pub fn outbound(s: State, kind: Kind) -> Outbound {
    match kind {
        // A.2.1: pending out unless already subscribed; always routed (§3.1.2).
        Kind::Subscribe => {
            let state = if s.subscription.has_to() {
                s
            } else {
                State {
                    pending_out: true,
                    ..s
                }
            };
            Outbound { state, route: true }
        }
        // A.3.1: approves a pending request; with none pending it is a pre-approval (§3.4)
        // unless the contact is already subscribed.
        Kind::Subscribed => {
            if s.pending_in {
                Outbound {
                    state: State {
                        pending_in: false,
                        approved: false,
                        ..s.with_from()
                    },
                    route: true,
                }
            } else if s.subscription.has_from() {
                Outbound {
                    state: s,
                    route: false,
                }
            } else {
                Outbound {
                    state: State {
                        approved: true,
                        ..s
                    },
                    route: false,
                }
            }
        }
        // A.4.1: always routed (§3.3.2).
        Kind::Unsubscribe => Outbound {
            state: State {
                pending_out: false,
                ..s.without_to()
            },
            route: true,
        },
        // A.5.1: routed only if it cancels or denies something; also cancels pre-approval.
        Kind::Unsubscribed => {
            let route = s.pending_in || s.subscription.has_from();
            Outbound {
                state: State {
                    pending_in: false,
                    approved: false,
                    ..s.without_from()
                },
                route,
            }
        }
    }
}

/// RFC 6121 Appendix A.2.2, A.3.2, A.4.2, A.5.2 (inbound), with pre-approval (§3.4).
pub fn inbound(s: State, kind: Kind) -> Inbound {
    let unchanged = Inbound {
        state: s,
        deliver: false,
        auto_subscribed: false,
    };
    match kind {
        Kind::Subscribe => {
            if s.subscription.has_from() {
                Inbound {
                    auto_subscribed: true,
                    ..unchanged
                }
            } else if s.approved {
                Inbound {
                    state: State {
                        approved: false,
                        pending_in: false,
                        ..s.with_from()
                    },
                    deliver: false,
                    auto_subscribed: true,
                }
            } else if s.pending_in {
                unchanged
            } else {
                Inbound {
                    state: State {
                        pending_in: true,
                        ..s
                    },
                    deliver: true,
                    auto_subscribed: false,
                }
            }
        }
        Kind::Subscribed => {
            if s.pending_out {
                Inbound {
                    state: State {
                        pending_out: false,
                        ..s.with_to()
                    },
                    deliver: true,
                    auto_subscribed: false,
                }
            } else {
                unchanged
            }
        }
        Kind::Unsubscribe => {
            if s.pending_in || s.subscription.has_from() {
                Inbound {
                    state: State {
                        pending_in: false,
                        ..s.without_from()
                    },
                    deliver: true,
                    auto_subscribed: false,
                }
            } else {
                unchanged
            }
        }
        Kind::Unsubscribed => {
            if s.pending_out || s.subscription.has_to() {
                Inbound {
                    state: State {
                        pending_out: false,
                        ..s.without_to()
                    },
                    deliver: true,
                    auto_subscribed: false,
                }
            } else {
                unchanged
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Subscription::{Both, From, None as No, To};

    /// The nine states of RFC 6121 Appendix A, by their names there.
    fn st(name: &str) -> State {
        let (sub, rest) = match name.split_once(" + ") {
            Some((s, r)) => (s, r),
            None => (name, ""),
        };
        let subscription = match sub {
            "None" => No,
            "To" => To,
            "From" => From,
            "Both" => Both,
            _ => panic!("bad state {name}"),
        };
        let (pending_out, pending_in) = match rest {
            "" => (false, false),
            "Pending Out" => (true, false),
            "Pending In" => (false, true),
            "Pending Out/In" => (true, true),
            _ => panic!("bad state {name}"),
        };
        State {
            subscription,
            pending_out,
            pending_in,
            approved: false,
        }
    }

    const STATES: [&str; 9] = [
        "None",
        "None + Pending Out",
        "None + Pending In",
        "None + Pending Out/In",
        "To",
        "To + Pending In",
        "From",
        "From + Pending Out",
        "Both",
    ];

    /// Checks a table of (existing, flag, new state) rows; `None` new state = no change.
    fn check_out(kind: Kind, table: [(&str, bool, Option<&str>); 9]) {
        for (i, (existing, route, new)) in table.into_iter().enumerate() {
            assert_eq!(existing, STATES[i]);
            let r = outbound(st(existing), kind);
            let want = new.map(st).unwrap_or(st(existing));
            assert_eq!(
                r.state.subscription, want.subscription,
                "{kind:?} from {existing}"
            );
            assert_eq!(
                (r.state.pending_out, r.state.pending_in),
                (want.pending_out, want.pending_in),
                "{kind:?} from {existing}"
            );
            assert_eq!(r.route, route, "route {kind:?} from {existing}");
        }
    }

    fn check_in(kind: Kind, table: [(&str, bool, Option<&str>); 9]) {
        for (existing, deliver, new) in table {
            let r = inbound(st(existing), kind);
            let want = new.map(st).unwrap_or(st(existing));
            assert_eq!(r.state, want, "{kind:?} from {existing}");
            assert_eq!(r.deliver, deliver, "deliver {kind:?} from {existing}");
        }
    }

    #[test]
    fn outbound_subscribe_a_2_1() {
        check_out(
            Kind::Subscribe,
            [
                ("None", true, Some("None + Pending Out")),
                ("None + Pending Out", true, None),
                ("None + Pending In", true, Some("None + Pending Out/In")),
                ("None + Pending Out/In", true, None),
                ("To", true, None),
                ("To + Pending In", true, None),
                ("From", true, Some("From + Pending Out")),
                ("From + Pending Out", true, None),
                ("Both", true, None),
            ],
        );
    }

    #[test]
    fn inbound_subscribe_a_2_2() {
        check_in(
            Kind::Subscribe,
            [
                ("None", true, Some("None + Pending In")),
                ("None + Pending Out", true, Some("None + Pending Out/In")),
                ("None + Pending In", false, None),
                ("None + Pending Out/In", false, None),
                ("To", true, Some("To + Pending In")),
                ("To + Pending In", false, None),
                ("From", false, None),
                ("From + Pending Out", false, None),
                ("Both", false, None),
            ],
        );
        // Already subscribed: the server answers `subscribed` on the contact's behalf.
        for s in ["From", "From + Pending Out", "Both"] {
            assert!(inbound(st(s), Kind::Subscribe).auto_subscribed, "{s}");
        }
        for s in ["None", "None + Pending In", "To", "To + Pending In"] {
            assert!(!inbound(st(s), Kind::Subscribe).auto_subscribed, "{s}");
        }
    }

    #[test]
    fn outbound_subscribed_a_3_1() {
        check_out(
            Kind::Subscribed,
            [
                ("None", false, None),
                ("None + Pending Out", false, None),
                ("None + Pending In", true, Some("From")),
                ("None + Pending Out/In", true, Some("From + Pending Out")),
                ("To", false, None),
                ("To + Pending In", true, Some("Both")),
                ("From", false, None),
                ("From + Pending Out", false, None),
                ("Both", false, None),
            ],
        );
    }

    #[test]
    fn inbound_subscribed_a_3_2() {
        check_in(
            Kind::Subscribed,
            [
                ("None", false, None),
                ("None + Pending Out", true, Some("To")),
                ("None + Pending In", false, None),
                ("None + Pending Out/In", true, Some("To + Pending In")),
                ("To", false, None),
                ("To + Pending In", false, None),
                ("From", false, None),
                ("From + Pending Out", true, Some("Both")),
                ("Both", false, None),
            ],
        );
    }

    #[test]
    fn outbound_unsubscribe_a_4_1() {
        check_out(
            Kind::Unsubscribe,
            [
                ("None", true, None),
                ("None + Pending Out", true, Some("None")),
                ("None + Pending In", true, None),
                ("None + Pending Out/In", true, Some("None + Pending In")),
                ("To", true, Some("None")),
                ("To + Pending In", true, Some("None + Pending In")),
                ("From", true, None),
                ("From + Pending Out", true, Some("From")),
                ("Both", true, Some("From")),
            ],
        );
    }

    #[test]
    fn inbound_unsubscribe_a_4_2() {
        check_in(
            Kind::Unsubscribe,
            [
                ("None", false, None),
                ("None + Pending Out", false, None),
                ("None + Pending In", true, Some("None")),
                ("None + Pending Out/In", true, Some("None + Pending Out")),
                ("To", false, None),
                ("To + Pending In", true, Some("To")),
                ("From", true, Some("None")),
                ("From + Pending Out", true, Some("None + Pending Out")),
                ("Both", true, Some("To")),
            ],
        );
    }

    #[test]
    fn outbound_unsubscribed_a_5_1() {
        check_out(
            Kind::Unsubscribed,
            [
                ("None", false, None),
                ("None + Pending Out", false, None),
                ("None + Pending In", true, Some("None")),
                ("None + Pending Out/In", true, Some("None + Pending Out")),
                ("To", false, None),
                ("To + Pending In", true, Some("To")),
                ("From", true, Some("None")),
                ("From + Pending Out", true, Some("None + Pending Out")),
                ("Both", true, Some("To")),
            ],
        );
    }

    #[test]
    fn inbound_unsubscribed_a_5_2() {
        check_in(
            Kind::Unsubscribed,
            [
                ("None", false, None),
                ("None + Pending Out", true, Some("None")),
                ("None + Pending In", false, None),
                ("None + Pending Out/In", true, Some("None + Pending In")),
                ("To", true, Some("None")),
                ("To + Pending In", true, Some("None + Pending In")),
                ("From", false, None),
                ("From + Pending Out", true, Some("From")),
                ("Both", true, Some("From")),
            ],
        );
    }

    #[test]
    fn pre_approval() {
        // Subscribed with nothing pending records a pre-approval (§3.4.1) ...
        for s in ["None", "None + Pending Out", "To"] {
            let r = outbound(st(s), Kind::Subscribed);
            assert!(r.state.approved && !r.route, "{s}");
        }
        // ... which an inbound subscribe consumes without asking the user (§3.4.2).
        let approved = State {
            approved: true,
            ..st("None + Pending Out")
        };
        let r = inbound(approved, Kind::Subscribe);
        assert_eq!(r.state, st("From + Pending Out"));
        assert!(r.auto_subscribed && !r.deliver);
        let r = inbound(
            State {
                approved: true,
                ..st("To")
            },
            Kind::Subscribe,
        );
        assert_eq!(r.state, st("Both"));
        // Unsubscribed cancels a pre-approval without routing anything.
        let r = outbound(
            State {
                approved: true,
                ..st("None")
            },
            Kind::Unsubscribed,
        );
        assert_eq!(r.state, st("None"));
        assert!(!r.route);
        // Approving a pending request clears any stale pre-approval.
        let r = outbound(
            State {
                approved: true,
                ..st("None + Pending In")
            },
            Kind::Subscribed,
        );
        assert_eq!(r.state, st("From"));
    }

    #[test]
    fn kinds_round_trip() {
        for k in [
            Kind::Subscribe,
            Kind::Subscribed,
            Kind::Unsubscribe,
            Kind::Unsubscribed,
        ] {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("probe"), None);
    }
}
