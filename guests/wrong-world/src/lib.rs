//! `wrong-world`: a component that exports `weir:handler/guest@0.1.0` with the
//! wrong signature (`handle: func(payload: string) -> string`).
//!
//! Built from its own inline WIT, not `wit/`: same export name, wrong types.
//! The host must refuse it at upload, naming the mismatch.

/// The generated bindings and the export; `unsafe` stays inside the code
/// wit-bindgen generates.
#[allow(missing_docs, unsafe_code)]
mod component {
    mod bindings {
        wit_bindgen::generate!({
            inline: r"
                package weir:handler@0.1.0;

                interface guest {
                    handle: func(payload: string) -> string;
                }

                world wrong {
                    export guest;
                }
            ",
            world: "wrong",
        });
    }

    use bindings::exports::weir::handler::guest::Guest;

    struct Wrong;

    impl Guest for Wrong {
        fn handle(payload: String) -> String {
            payload
        }
    }

    bindings::export!(Wrong with_types_in bindings);
}
