//! wit-bindgen bindings of the `room-policy-with-init` world, for `heliograph-plugin-sdk`
//! (its `room_policy!` macro). A crate of its own because wit-bindgen exports its helper
//! macros at the crate root, named after the exported interfaces: the SDK's authenticator
//! bindings export `lifecycle` too, and two sets of those macros cannot share a crate.
//! Not a public API.

wit_bindgen::generate!({
    path: "wit",
    world: "room-policy-with-init",
    pub_export_macro: true,
    export_macro_name: "export",
    default_bindings_module: "heliograph_plugin_sdk::__guest_room::bindings",
});
