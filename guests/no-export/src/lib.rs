//! `no-export`: a valid component that exports an unrelated interface
//! (`example:other/run`) and not `weir:handler/guest`.
//!
//! The host must refuse it at upload: it is not a handler.

/// The generated bindings and the export; `unsafe` stays inside the code
/// wit-bindgen generates.
#[allow(missing_docs, unsafe_code)]
mod component {
    mod bindings {
        wit_bindgen::generate!({
            inline: r"
                package example:other;

                interface run {
                    run: func() -> string;
                }

                world other {
                    export run;
                }
            ",
            world: "other",
        });
    }

    use bindings::exports::example::other::run::Guest;

    struct Other;

    impl Guest for Other {
        fn run() -> String {
            "not a handler".to_string()
        }
    }

    bindings::export!(Other with_types_in bindings);
}
