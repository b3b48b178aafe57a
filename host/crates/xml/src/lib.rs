//! XML for XMPP streams: the element tree and serializer ([`element`]), namespace
//! constants ([`ns`]) and the incremental, limit-enforcing stream parser ([`parser`]).

pub mod element;
pub mod ns;
pub mod parser;

pub use element::{Element, Node};
pub use parser::{ParseError, ParserLimits, StreamEvent, StreamHeader, StreamParser};
