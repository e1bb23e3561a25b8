;; `not-a-component`: a plain core WebAssembly module, not a component.
;; `cargo xtask guests` converts it to `not_a_component.wasm`; the host must
;; refuse it at upload with a message saying it is not a component.
(module
  (memory (export "memory") 1)
  (func (export "handle") (param i32 i32) (result i32)
    local.get 0))
