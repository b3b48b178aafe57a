//! What nodes say to each other on NATS, and on which subjects.
//!
//! - `heliograph.cluster.events`, heard by every node: heartbeats (with a digest of the
//!   sender's sessions), sessions bound, changed and ended (numbered per node, so a gap
//!   is seen), a node leaving, and change notices (tenants).
//! - `heliograph.node.NAME`, heard by that node only: stanzas for its sessions, requests
//!   to close one, requests for a full list of its sessions and the lists themselves.
//!
//! Everything is JSON except stanzas for a session, the hot path: `D`, the session id,
//! a space, the full JID, a newline and the stanza's XML; a `message` kept by its sender
//! until delivered is `N`, the sending node, its number, then as `D` (see `inflight`).
//! The same frames in lowercase (`d`, `n`, `h`) carry the stanza in the compact binary
//! form of [`crate::xml::compact`] instead of XML text: nothing to escape or parse on
//! either side. A node sends them only to nodes whose heartbeat says `compact` (older
//! nodes get XML). Stanzas for one node that are queued together leave in one NATS
//! message: `B`, then each frame as a 4-byte little-endian length and its bytes.

use serde::{Deserialize, Serialize};

use crate::xml::Element;

/// Every node's subject.
pub const EVENTS: &str = "heliograph.cluster.events";

/// The subject of one node.
pub fn node_subject(node: &str) -> String {
    format!("heliograph.node.{node}")
}

/// One session as the registry replicates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Full JID.
    pub jid: String,
    /// The session's id on its node.
    pub id: u64,
    /// When it was bound, microseconds since the Unix epoch (the newer session wins a
    /// conflict).
    pub since_us: u64,
    pub priority: i8,
    /// Its last available presence (XML), `None` while unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<String>,
    /// The features' per-session settings that are on (`carbons`), so a feature acting
    /// for the account on another node treats the session as its own node does. Not in
    /// the digest: a node of the previous version, which does not know the field, must
    /// still agree on the digest (a missed change shows as a gap in the event numbers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

impl SessionRecord {
    /// The record's contribution to its node's digest: equal digests mean equal lists
    /// (XOR of these, so adding and removing one is O(1)).
    pub fn digest(&self) -> u64 {
        // FNV-1a: stable across processes and versions (DefaultHasher is not promised to be).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        eat(self.jid.as_bytes());
        eat(&self.id.to_le_bytes());
        eat(&self.since_us.to_le_bytes());
        eat(&[self.priority as u8]);
        eat(self.presence.as_deref().unwrap_or("-").as_bytes());
        h
    }
}

/// What goes on [`EVENTS`]. `incarnation` tells a restarted node from its previous run;
/// `seq` numbers a node's session events (and is the last one's in a heartbeat).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Event {
    Heartbeat {
        node: String,
        incarnation: u64,
        seq: u64,
        count: u64,
        digest: u64,
        /// Sessions bound on the node (for `cluster status`).
        #[serde(default)]
        version: String,
        /// The external component domains its connections hold.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        components: Vec<crate::components::ComponentDomain>,
        /// Where clients reach it (`host:port`), for another node's drain.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        address: String,
        /// It is draining: no new sessions, no rooms placed on it.
        #[serde(default)]
        draining: bool,
        /// It reads numbered message frames (`N`) and answers them with `delivered` or
        /// `returned`; a node whose heartbeat lacks this (an older version) is sent
        /// plain `D` frames, taken when it answers `received` (see `inflight`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        numbered: bool,
        /// It reads stanza frames in the compact form (`d`, `n`, `h`); a node whose
        /// heartbeat lacks this (an older version) is sent XML frames.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        compact: bool,
        /// It takes over the receipts of a session's stanzas when the session moves to it
        /// and tells the node it left what became of them (see `moved_receipts`); a node
        /// whose heartbeat lacks this gets none (they are confirmed as the session leaves).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        moved_receipts: bool,
    },
    /// A session was bound or its presence changed.
    Up {
        node: String,
        incarnation: u64,
        seq: u64,
        session: SessionRecord,
    },
    /// A session ended.
    Down {
        node: String,
        incarnation: u64,
        seq: u64,
        jid: String,
        id: u64,
    },
    /// The node is shutting down: its sessions are gone.
    Leave { node: String, incarnation: u64 },
    /// Something in the shared database changed; every node reloads it.
    Notice { node: String, notice: Notice },
}

impl Event {
    /// The node that sent it.
    pub fn node(&self) -> &str {
        match self {
            Event::Heartbeat { node, .. }
            | Event::Up { node, .. }
            | Event::Down { node, .. }
            | Event::Leave { node, .. }
            | Event::Notice { node, .. } => node,
        }
    }
}

/// A change notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Notice {
    /// Tenants were added, changed, disabled or removed.
    Tenants,
    /// A plugin slot was installed, reconfigured, rolled back or removed: every node
    /// makes it what the plugin store holds.
    Plugin { tenant: String, slot: String },
    /// A message was stored offline for the account `local@domain`: a node holding an
    /// available session of it delivers what is stored (the session may have read the
    /// stored messages before this one, while the storing node did not know it).
    OfflineStored { local: String, domain: String },
}

/// What goes to one node's subject.
#[derive(Debug, Clone, PartialEq)]
pub enum Direct {
    /// A stanza for the session `id` (`jid`) of the receiving node.
    Deliver {
        jid: String,
        id: u64,
        stanza: Element,
    },
    /// A `message` for the session `id` (`jid`) of the receiving node, numbered `seq` by
    /// node `from`, which keeps it until told it was `delivered` (or `returned`).
    Numbered {
        from: String,
        seq: u64,
        jid: String,
        id: u64,
        stanza: Element,
    },
    /// The end of a batch from node `from` (nodes before numbered messages, read for
    /// their sake): the `message` frames it numbered are taken
    /// up to `seq` once the frames before this one are (see `inflight`).
    Sent { from: String, seq: u64 },
    /// A stanza for a hosted entity this node hosts (a MUC room placed here), `from`
    /// stamped by the sender's node.
    Hosted { stanza: Element },
    /// Other messages.
    Control(Control),
}

/// The JSON messages to one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Control {
    /// Close the session `id` with this stream error.
    Close {
        jid: String,
        id: u64,
        condition: String,
        #[serde(default)]
        text: Option<String>,
    },
    /// Send `from` part `part` of the full list of your sessions (part 0: of a list taken
    /// now; the next parts of the same list). The receiver asks for each part once it has
    /// applied the one before: the list never outruns it.
    SyncRequest {
        from: String,
        #[serde(default)]
        part: u32,
    },
    /// `node` took the messages this node numbered for it, up to `upto` (nodes before
    /// numbered messages; see `Delivered`).
    Received { node: String, upto: u64 },
    /// The clients of `node`'s sessions have the messages this node numbered `seqs`.
    Delivered { node: String, seqs: Vec<u64> },
    /// The sessions of `node` ended before their clients had the messages numbered
    /// `seqs`: this node routes its copies again.
    Returned { node: String, seqs: Vec<u64> },
    /// One part of a node's full list, as of its event `seq`.
    Snapshot {
        node: String,
        incarnation: u64,
        seq: u64,
        part: u32,
        parts: u32,
        sessions: Vec<SessionRecord>,
    },
}

/// How a frame carries its stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StanzaForm {
    /// XML text (`D`, `N`, `H`): what every version reads.
    Xml,
    /// The compact binary form (`d`, `n`, `h`), for nodes that said they read it.
    Compact,
}

/// Stanzas between nodes were checked by the node that received them from a client.
const LIMITS: crate::xml::ParserLimits = crate::xml::ParserLimits {
    max_stanza_bytes: usize::MAX / 2,
    max_depth: 64,
};

/// Why a message from NATS was not understood.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("malformed stanza frame: {0}")]
    Frame(&'static str),
    #[error("malformed stanza: {0}")]
    Xml(#[from] crate::xml::ParseError),
    #[error("malformed compact stanza: {0}")]
    Compact(#[from] crate::xml::compact::CompactError),
}

impl Direct {
    /// The frame with its stanza (if any) as XML text, which every version reads.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_in(StanzaForm::Xml)
    }

    /// The frame with its stanza (if any) in `form`.
    pub fn encode_in(&self, form: StanzaForm) -> Vec<u8> {
        let letter = |xml: u8| match form {
            StanzaForm::Xml => xml,
            StanzaForm::Compact => xml.to_ascii_lowercase(),
        };
        match self {
            Direct::Deliver { jid, id, stanza } => {
                let id = id.to_string();
                stanza_frame(letter(b'D'), &[id.as_bytes(), jid.as_bytes()], stanza, form)
            }
            Direct::Numbered {
                from,
                seq,
                jid,
                id,
                stanza,
            } => {
                let (seq, id) = (seq.to_string(), id.to_string());
                let head = [
                    from.as_bytes(),
                    seq.as_bytes(),
                    id.as_bytes(),
                    jid.as_bytes(),
                ];
                stanza_frame(letter(b'N'), &head, stanza, form)
            }
            Direct::Sent { from, seq } => format!("S{from} {seq}").into_bytes(),
            Direct::Hosted { stanza } => {
                let mut out = Vec::with_capacity(256);
                out.push(letter(b'H'));
                put_stanza(&mut out, stanza, form);
                out
            }
            Direct::Control(c) => serde_json::to_vec(c).unwrap_or_default(),
        }
    }

    /// Several stanza frames in one message, in order.
    pub fn encode_batch(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + frames.iter().map(|f| f.len() + 4).sum::<usize>());
        out.push(b'B');
        for f in frames {
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    /// Every message in a NATS payload: one, or the frames of a batch.
    pub fn decode_all(bytes: &[u8]) -> Result<Vec<Direct>, WireError> {
        let Some(mut rest) = bytes.strip_prefix(b"B") else {
            return Ok(vec![Direct::decode(bytes)?]);
        };
        let mut out = Vec::new();
        while !rest.is_empty() {
            let (len, tail) = rest
                .split_first_chunk::<4>()
                .ok_or(WireError::Frame("cut batch length"))?;
            let len = u32::from_le_bytes(*len) as usize;
            if tail.len() < len {
                return Err(WireError::Frame("cut batch frame"));
            }
            out.push(Direct::decode(&tail[..len])?);
            rest = &tail[len..];
        }
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Direct, WireError> {
        let Some((&letter, rest)) = bytes.split_first() else {
            return Err(WireError::Frame("empty"));
        };
        let form = if letter.is_ascii_lowercase() {
            StanzaForm::Compact
        } else {
            StanzaForm::Xml
        };
        match letter {
            b'S' => {
                let text = std::str::from_utf8(rest).map_err(|_| WireError::Frame("not UTF-8"))?;
                let (from, seq) = text.split_once(' ').ok_or(WireError::Frame("no number"))?;
                let seq = seq.parse().map_err(|_| WireError::Frame("bad number"))?;
                Ok(Direct::Sent {
                    from: from.to_string(),
                    seq,
                })
            }
            b'N' | b'n' => {
                let (head, stanza) = head_and_stanza(rest, form)?;
                let mut words = head.splitn(4, ' ');
                let mut word = || words.next().ok_or(WireError::Frame("short numbered head"));
                let from = word()?.to_string();
                let seq = word()?
                    .parse()
                    .map_err(|_| WireError::Frame("bad number"))?;
                let id = word()?.parse().map_err(|_| WireError::Frame("bad id"))?;
                let jid = word()?.to_string();
                Ok(Direct::Numbered {
                    from,
                    seq,
                    jid,
                    id,
                    stanza,
                })
            }
            b'H' | b'h' => Ok(Direct::Hosted {
                stanza: stanza(rest, form)?,
            }),
            b'D' | b'd' => {
                let (head, stanza) = head_and_stanza(rest, form)?;
                let (id, jid) = head.split_once(' ').ok_or(WireError::Frame("no JID"))?;
                let id = id.parse().map_err(|_| WireError::Frame("bad id"))?;
                Ok(Direct::Deliver {
                    jid: jid.to_string(),
                    id,
                    stanza,
                })
            }
            _ => Ok(Direct::Control(serde_json::from_slice(bytes)?)),
        }
    }

    /// The full JID and stanza of a `Deliver` or `Numbered` frame.
    pub fn into_message(self) -> Option<(String, Element)> {
        match self {
            Direct::Deliver { jid, stanza, .. } | Direct::Numbered { jid, stanza, .. } => {
                Some((jid, stanza))
            }
            _ => None,
        }
    }
}

/// Appends `stanza` to a frame in `form`.
/// `letter`, the fields of `head` separated by spaces, a line feed and the stanza in
/// `form`.
fn stanza_frame(letter: u8, head: &[&[u8]], stanza: &Element, form: StanzaForm) -> Vec<u8> {
    let head_len: usize = head.iter().map(|f| f.len() + 1).sum();
    let mut out = Vec::with_capacity(head_len + 257);
    out.push(letter);
    for (i, field) in head.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(field);
    }
    out.push(b'\n');
    put_stanza(&mut out, stanza, form);
    out
}

fn put_stanza(out: &mut Vec<u8>, stanza: &Element, form: StanzaForm) {
    match form {
        StanzaForm::Xml => {
            let mut xml = String::with_capacity(256);
            stanza.write_to(&mut xml, "");
            out.extend_from_slice(xml.as_bytes());
        }
        StanzaForm::Compact => crate::xml::compact::encode(stanza, crate::xml::ns::CLIENT, out),
    }
}

/// The stanza that is the rest of a frame, in `form`.
fn stanza(bytes: &[u8], form: StanzaForm) -> Result<Element, WireError> {
    Ok(match form {
        StanzaForm::Xml => {
            crate::xml::parser::parse_element(bytes, crate::xml::ns::CLIENT, LIMITS)?
        }
        StanzaForm::Compact => {
            crate::xml::compact::decode(bytes, crate::xml::ns::CLIENT, LIMITS.max_depth)?
        }
    })
}

/// A stanza frame's head line (before the first newline) and its stanza.
fn head_and_stanza(rest: &[u8], form: StanzaForm) -> Result<(&str, Element), WireError> {
    let nl = rest
        .iter()
        .position(|b| *b == b'\n')
        .ok_or(WireError::Frame("no newline"))?;
    let head = std::str::from_utf8(&rest[..nl]).map_err(|_| WireError::Frame("not UTF-8"))?;
    Ok((head, stanza(&rest[nl + 1..], form)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::ns;

    #[test]
    fn a_stanza_frame_round_trips() {
        let stanza = Element::new("message", ns::CLIENT)
            .with_attr("to", "bob@example.com/phone")
            .with_attr("type", "chat")
            .with_child(Element::new("body", ns::CLIENT).with_text("a < b & \n c"));
        let d = Direct::Deliver {
            jid: "bob@example.com/phone".into(),
            id: 42,
            stanza,
        };
        assert_eq!(Direct::decode(&d.encode()).unwrap(), d);
        let c = Direct::Control(Control::SyncRequest {
            from: "n1".into(),
            part: 3,
        });
        assert_eq!(Direct::decode(&c.encode()).unwrap(), c);
        assert!(Direct::decode(b"D12 x").is_err());
        let h = Direct::Hosted {
            stanza: Element::new("presence", ns::CLIENT).with_attr("to", "room@conference.x/nick"),
        };
        assert_eq!(Direct::decode(&h.encode()).unwrap(), h);
        let sent = Direct::Sent {
            from: "n1".into(),
            seq: 77,
        };
        assert_eq!(Direct::decode(&sent.encode()).unwrap(), sent);
        let n = Direct::Numbered {
            from: "n1".into(),
            seq: 1_733_000_000_000_001,
            jid: "bob@example.com/a phone".into(),
            id: 9,
            stanza: Element::new("message", ns::CLIENT).with_attr("id", "m1"),
        };
        assert_eq!(Direct::decode(&n.encode()).unwrap(), n);
        let delivered = Direct::Control(Control::Delivered {
            node: "n2".into(),
            seqs: vec![1, 2, 5],
        });
        assert_eq!(Direct::decode(&delivered.encode()).unwrap(), delivered);
        let batch = Direct::encode_batch(&[d.encode(), c.encode(), d.encode()]);
        assert_eq!(Direct::decode_all(&batch).unwrap(), vec![d.clone(), c, d]);
        assert!(Direct::decode_all(&batch[..batch.len() - 1]).is_err());
    }

    #[test]
    fn a_heartbeat_of_an_older_node_reads_numbered_frames_as_not_understood() {
        let old = r#"{"t":"heartbeat","node":"n1","incarnation":1,"seq":0,"count":0,"digest":0}"#;
        let Event::Heartbeat {
            numbered,
            compact,
            moved_receipts,
            ..
        } = serde_json::from_str(old).unwrap()
        else {
            panic!("not a heartbeat");
        };
        assert!(!numbered);
        assert!(!compact);
        assert!(!moved_receipts);
    }

    #[test]
    fn compact_frames_round_trip_and_mix_with_xml_ones_in_a_batch() {
        let stanza = Element::new("message", ns::CLIENT)
            .with_attr("to", "bob@example.com/phone")
            .with_child(Element::new("body", ns::CLIENT).with_text("a < b & \n c"))
            .with_child(Element::new("stanza-id", "urn:xmpp:sid:0").with_attr("id", "7"));
        let frames = [
            Direct::Deliver {
                jid: "bob@example.com/phone".into(),
                id: 42,
                stanza: stanza.clone(),
            },
            Direct::Numbered {
                from: "n1".into(),
                seq: 1_733_000_000_000_001,
                jid: "bob@example.com/a phone".into(),
                id: 9,
                stanza: stanza.clone(),
            },
            Direct::Hosted {
                stanza: stanza.clone(),
            },
        ];
        let mut batch = Vec::new();
        for f in &frames {
            let compact = f.encode_in(StanzaForm::Compact);
            assert!(compact[0].is_ascii_lowercase());
            assert!(compact.len() < f.encode().len());
            assert_eq!(&Direct::decode(&compact).unwrap(), f);
            batch.push(compact);
            batch.push(f.encode());
        }
        let decoded = Direct::decode_all(&Direct::encode_batch(&batch)).unwrap();
        assert_eq!(decoded.len(), 6);
        for (got, want) in decoded.chunks(2).zip(&frames) {
            assert_eq!(got, [want.clone(), want.clone()]);
        }
        // The head is read as before; a cut compact stanza is an error.
        let compact = frames[1].encode_in(StanzaForm::Compact);
        assert!(Direct::decode(&compact[..compact.len() - 1]).is_err());
        assert!(Direct::decode(b"").is_err());
    }

    #[test]
    fn the_digest_sees_every_field_but_the_flags() {
        let a = SessionRecord {
            jid: "a@b/c".into(),
            id: 1,
            since_us: 2,
            priority: 0,
            presence: None,
            flags: Vec::new(),
        };
        let mut b = a.clone();
        b.priority = 1;
        let mut c = a.clone();
        c.presence = Some("<presence/>".into());
        assert_ne!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
        assert_eq!(a.digest(), a.clone().digest());
        let mut d = a.clone();
        d.flags = vec!["carbons".into()];
        assert_eq!(a.digest(), d.digest());
    }

    #[test]
    fn a_record_of_the_previous_version_has_no_flags() {
        let old: SessionRecord =
            serde_json::from_str(r#"{"jid":"a@b/c","id":1,"since_us":2,"priority":0}"#).unwrap();
        assert!(old.flags.is_empty());
        let with = SessionRecord {
            flags: vec!["carbons".into()],
            ..old
        };
        let back: SessionRecord =
            serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
        assert_eq!(back.flags, vec!["carbons".to_string()]);
    }
}
