//! The `<body/>` wrapper of BOSH: parsing and rendering live in
//! [`heliograph_xmpp::bosh`] (no I/O, so the fuzz targets reach them without the server's
//! dependencies); re-exported here under their old paths.

pub use heliograph_xmpp::bosh::*;
