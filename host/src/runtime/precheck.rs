//! The precheck of an upload: everything about a component that can be
//! known without compiling it, read with `wasmparser` in time linear in its
//! size. The header (a component, not a core module), the top-level exports
//! (the guest interface at our version) and imports (`weir:handler` at our
//! version and WASI 0.2, nothing else), WebAssembly validity, and the type
//! of the exported `handle` function. Linking after compilation remains the
//! authoritative check; this one only makes sure garbage and other worlds
//! never cost a compilation.

use wasmparser::component_types::{ComponentDefinedType, ComponentEntityType, ComponentValType};
use wasmparser::types::TypesRef;

use super::world::{ComponentError, GUEST_EXPORT, PACKAGE_PREFIX, PACKAGE_VERSION};

/// The type `handle` must have, as [`render_func`] writes it.
const HANDLE_TYPE: &str = "func(event: record { id: string, topic: string, partition: u32, \
    offset: u64, key: option<string>, payload: list<u8>, headers: list<tuple<string, string>>, \
    timestamp-ms: u64 }) -> result<list<record { topic: string, key: option<string>, \
    payload: list<u8>, headers: list<tuple<string, string>> }>, variant { retry(string), \
    reject(string) }>";

/// WASI packages the linker provides (version 0.2.x of each).
const WASI_PACKAGES: [&str; 6] = [
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
];

/// Refuse what is not a component of the `weir:handler` world without
/// compiling it (see the module docs).
pub(crate) fn precheck(bytes: &[u8]) -> Result<(), ComponentError> {
    match bytes.get(0..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(ComponentError::CoreModule),
        Some([0, b'a', b's', b'm', ..]) => {}
        _ => return Err(ComponentError::NotWasm),
    }
    let (imports, exports) =
        top_level_names(bytes).map_err(|e| ComponentError::Invalid(e.to_string()))?;
    check_export_names(&exports)?;
    for name in &imports {
        check_import_name(name)?;
    }
    let types = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(bytes)
        .map_err(|e| ComponentError::Invalid(e.to_string()))?;
    let found = handle_type(types.as_ref());
    if found.as_deref() != Some(HANDLE_TYPE) {
        return Err(ComponentError::WrongWorld(format!(
            "`{GUEST_EXPORT}` must export `handle: {HANDLE_TYPE}`, found {}",
            found.map_or("no `handle` function".to_string(), |f| format!(
                "`handle: {f}`"
            ))
        )));
    }
    Ok(())
}

/// The type of the guest export's `handle`, written out.
fn handle_type(types: TypesRef<'_>) -> Option<String> {
    let item = types.component_item_for_export(GUEST_EXPORT)?;
    let ComponentEntityType::Instance(instance) = item.ty else {
        return None;
    };
    let handle = types[instance].exports.get("handle")?;
    let ComponentEntityType::Func(func) = handle.ty else {
        return None;
    };
    Some(render_func(types, &types[func]))
}

fn render_func(
    types: TypesRef<'_>,
    func: &wasmparser::component_types::ComponentFuncType,
) -> String {
    let params: Vec<String> = func
        .params
        .iter()
        .map(|(name, ty)| format!("{name}: {}", render(types, ty)))
        .collect();
    let result = func
        .result
        .as_ref()
        .map(|r| format!(" -> {}", render(types, r)))
        .unwrap_or_default();
    format!("func({}){result}", params.join(", "))
}

/// A value type in WIT-like syntax; kinds a handler never uses print as `?`.
fn render(types: TypesRef<'_>, ty: &ComponentValType) -> String {
    let id = match ty {
        ComponentValType::Primitive(p) => return p.to_string(),
        ComponentValType::Type(id) => *id,
    };
    let list = |items: Vec<String>| items.join(", ");
    match &types[id] {
        ComponentDefinedType::Primitive(p) => p.to_string(),
        ComponentDefinedType::Record(r) => format!(
            "record {{ {} }}",
            list(
                r.fields
                    .iter()
                    .map(|(n, t)| format!("{n}: {}", render(types, t)))
                    .collect()
            )
        ),
        ComponentDefinedType::Variant(v) => format!(
            "variant {{ {} }}",
            list(
                v.cases
                    .iter()
                    .map(|(n, c)| match &c.ty {
                        Some(t) => format!("{n}({})", render(types, t)),
                        None => n.to_string(),
                    })
                    .collect()
            )
        ),
        ComponentDefinedType::List { element, .. } => format!("list<{}>", render(types, element)),
        ComponentDefinedType::Tuple(t) => format!(
            "tuple<{}>",
            list(t.types.iter().map(|t| render(types, t)).collect())
        ),
        ComponentDefinedType::Option { ty, .. } => format!("option<{}>", render(types, ty)),
        ComponentDefinedType::Result { ok, err, .. } => format!(
            "result<{}, {}>",
            ok.as_ref().map_or("_".into(), |t| render(types, t)),
            err.as_ref().map_or("_".into(), |t| render(types, t))
        ),
        _ => "?".into(),
    }
}

/// The names a component imports and exports at its top level (not those
/// of the modules and components nested in it).
fn top_level_names(bytes: &[u8]) -> wasmparser::Result<(Vec<String>, Vec<String>)> {
    use wasmparser::Payload;
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    imports.push(import?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    exports.push(export?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

/// The component must export the guest interface at our version.
pub(crate) fn check_export_names(exports: &[String]) -> Result<(), ComponentError> {
    if exports.iter().any(|e| e == GUEST_EXPORT) {
        return Ok(());
    }
    if let Some(other) = exports
        .iter()
        .find(|e| e.starts_with("weir:handler/guest@"))
    {
        return Err(ComponentError::VersionMismatch {
            found: other.clone(),
        });
    }
    let found = if exports.is_empty() {
        "none".to_string()
    } else {
        exports.join(", ")
    };
    Err(ComponentError::MissingExport { found })
}

/// An import must be `weir:handler` at our version or WASI 0.2.
pub(crate) fn check_import_name(name: &str) -> Result<(), ComponentError> {
    if name.starts_with(PACKAGE_PREFIX) {
        if name.ends_with(&format!("@{PACKAGE_VERSION}")) {
            return Ok(());
        }
        return Err(ComponentError::VersionMismatch {
            found: name.to_string(),
        });
    }
    if WASI_PACKAGES.iter().any(|p| name.starts_with(p)) && name.contains("@0.2.") {
        return Ok(());
    }
    Err(ComponentError::WrongWorld(format!(
        "it imports `{name}`, which handlers are not given (only `weir:handler@{PACKAGE_VERSION}` and WASI 0.2)"
    )))
}
