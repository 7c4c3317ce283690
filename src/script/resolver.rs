//! Where `import "name" as x;` finds its module: the scripts directory, and
//! nowhere else.
//!
//! Imports are resolved once, when a runbook is compiled, and the modules are
//! embedded in its compiled form. At run time no file is read: an import the
//! compiler could not see (a computed path) is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope};

/// Scripts are small; a larger file is a mistake or an attack.
pub const MAX_SCRIPT_BYTES: u64 = 1024 * 1024;

pub struct ScriptsResolver {
    root: PathBuf,
    seen: Arc<Mutex<BTreeMap<String, String>>>,
}

impl ScriptsResolver {
    pub fn new(root: &Path) -> Self {
        ScriptsResolver {
            root: root.to_path_buf(),
            seen: Arc::default(),
        }
    }

    pub fn seen(&self) -> Arc<Mutex<BTreeMap<String, String>>> {
        self.seen.clone()
    }
}

fn refuse(path: &str, why: &str, pos: Position) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(format!("import \"{path}\" refused: {why}").into(), pos).into()
}

/// Read a file of the scripts directory named relative to it.
///
/// Fails when the name is absolute, climbs out with `..`, leads outside the
/// directory through a symlink, is missing, too large, not UTF-8 or holds a
/// NUL byte (see [`crate::text::decode`]).
pub fn read_script(root: &Path, name: &str) -> Result<(String, String), String> {
    if name.is_empty() || name.starts_with('/') || name.starts_with('\\') || name.contains(':') {
        return Err("paths are relative to the scripts directory".into());
    }
    if name
        .split(['/', '\\'])
        .any(|seg| seg == ".." || seg == "." || seg.is_empty())
    {
        return Err("paths may not contain `..`, `.` or empty segments".into());
    }
    let file = if name.ends_with(".rhai") {
        name.to_string()
    } else {
        format!("{name}.rhai")
    };
    let full = root.join(&file);
    let canon_root = root.canonicalize().map_err(|e| {
        format!(
            "the scripts directory {} cannot be read: {e}",
            root.display()
        )
    })?;
    let canon = full
        .canonicalize()
        .map_err(|_| format!("{} does not exist", full.display()))?;
    if !canon.starts_with(&canon_root) {
        return Err(format!(
            "{} points outside the scripts directory",
            full.display()
        ));
    }
    let meta = std::fs::metadata(&canon).map_err(|e| format!("{}: {e}", full.display()))?;
    if meta.len() > MAX_SCRIPT_BYTES {
        return Err(format!("{} is larger than 1 MiB", full.display()));
    }
    let bytes = std::fs::read(&canon).map_err(|e| format!("{}: {e}", full.display()))?;
    let text = crate::text::decode(bytes, "scripts")
        .map_err(|e| format!("{}:{}:{}: {}", full.display(), e.line, e.col, e.message))?;
    Ok((file, text))
}

impl ModuleResolver for ScriptsResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Arc<Module>, Box<EvalAltResult>> {
        let (file, text) = read_script(&self.root, path).map_err(|why| refuse(path, &why, pos))?;
        let ast = engine
            .compile(&text)
            .map_err(|e| EvalAltResult::ErrorInModule(file.clone(), Box::new(e.into()), pos))?;
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(|e| EvalAltResult::ErrorInModule(file.clone(), e, pos))?;
        self.seen.lock().expect("resolver lock").insert(file, text);
        Ok(Arc::new(module))
    }
}

/// The run-time resolver: everything a script may import was embedded when it
/// was compiled.
pub struct NoRuntimeImports;

impl ModuleResolver for NoRuntimeImports {
    fn resolve(
        &self,
        _engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Arc<Module>, Box<EvalAltResult>> {
        Err(refuse(
            path,
            "modules are imported by a literal name from the scripts directory, like import \"zendesk\" as zd",
            pos,
        ))
    }
}
