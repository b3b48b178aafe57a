//! wit-bindgen bindings of the `component-with-init` world, for `heliograph-plugin-sdk`
//! (its `component!` macro). A crate of its own for the same reason as the room-policy
//! bindings: wit-bindgen exports its helper macros at the crate root, named after the
//! exported interfaces, and every world exports `lifecycle`. Not a public API.

wit_bindgen::generate!({
    path: "wit",
    world: "component-with-init",
    pub_export_macro: true,
    export_macro_name: "export",
    default_bindings_module: "heliograph_plugin_sdk::__guest_component::bindings",
});
