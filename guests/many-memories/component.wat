;; `many-memories`: a component of the `weir:handler` world, written by hand,
;; whose core module defines five linear memories (multi-memory). Each is
;; small, so a limit per memory lets it through; the sandbox allows at most
;; four memories per instance and counts them together, so the host must
;; refuse it at upload with a clear error. `handle` would return `ok([])`.
;; `cargo xtask guests` converts it to `many_memories.wasm`.
(component
  (core module $m
    (memory (export "memory") 1)
    (memory 1)
    (memory 1)
    (memory 1)
    (memory 1)
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      i32.const 1024)
    ;; The flattened event: id, topic, partition, offset, key, payload,
    ;; headers, timestamp-ms. The result is returned through memory: the
    ;; zeroed bytes at 16 read as `ok` with an empty list.
    (func (export "handle")
      (param i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32 i32 i32 i64) (result i32)
      i32.const 16))
  (core instance $i (instantiate $m))
  (type $header (tuple string string))
  (type $event (record
    (field "id" string)
    (field "topic" string)
    (field "partition" u32)
    (field "offset" u64)
    (field "key" (option string))
    (field "payload" (list u8))
    (field "headers" (list $header))
    (field "timestamp-ms" u64)))
  (type $output (record
    (field "topic" string)
    (field "key" (option string))
    (field "payload" (list u8))
    (field "headers" (list $header))))
  (type $handler-error (variant (case "retry" string) (case "reject" string)))
  (type $handle-result (result (list $output) (error $handler-error)))
  (type $handle-type (func (param "event" $event) (result $handle-result)))
  (func $handle (type $handle-type)
    (canon lift (core func $i "handle") (memory $i "memory") (realloc (func $i "cabi_realloc"))))
  (instance $guest
    (export "event" (type $event))
    (export "output" (type $output))
    (export "handler-error" (type $handler-error))
    (export "handle" (func $handle)))
  (export "weir:handler/guest@0.1.0" (instance $guest)))
