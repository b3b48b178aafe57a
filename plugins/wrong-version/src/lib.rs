//! Exports `heliograph:plugin/authentication` from a future package version (0.2.0): the
//! host must refuse it and name the version it serves.

wit_bindgen::generate!({
    inline: "
        package heliograph:plugin@0.2.0;
        interface authentication {
            authenticate: func(username: string, credential: string) -> bool;
        }
        world future-authenticator {
            export authentication;
        }
    ",
});

struct Future;

impl exports::heliograph::plugin::authentication::Guest for Future {
    fn authenticate(_username: String, _credential: String) -> bool {
        true
    }
}

export!(Future);
