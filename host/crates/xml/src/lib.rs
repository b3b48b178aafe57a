//! XML for XMPP streams: the element tree and serializer ([`element`]), namespace
//! constants ([`ns`]), the incremental, limit-enforcing stream parser ([`parser`]), and a
//! compact binary form of elements for trusted peers ([`compact`]).

pub mod compact;
pub mod element;
pub mod ns;
pub mod parser;

pub use element::{Element, Node};
pub use parser::{ParseError, ParserLimits, StreamEvent, StreamHeader, StreamParser};
