//! The one engine configuration: limits, disabled symbols, the script API, and
//! how scripts are compiled (once per runbook version) and run (once per step).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rhai::packages::{Package, StandardPackage};
use rhai::{AST, Dynamic, Engine, EvalAltResult, Module, OptimizationLevel, Scope};

use super::api::{self, Stop};
use super::host::{HostHandle, LogLevel};
use super::resolver::{NoRuntimeImports, ScriptsResolver};

/// What one script evaluation may consume. The defaults suit runbooks that
/// page through provider APIs; a step's timeout is the main bound on time.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    pub max_function_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    pub max_variables: usize,
    pub max_functions: usize,
    pub max_modules: usize,
    /// Bytes a script may hold at once, all its values together
    /// (`script_memory_mib` in runbookd.yaml).
    pub max_memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 50_000_000,
            max_call_levels: 48,
            max_expr_depth: 64,
            max_function_expr_depth: 32,
            max_string_size: 16 * 1024 * 1024,
            max_array_size: 100_000,
            max_map_size: 100_000,
            max_variables: 10_000,
            max_functions: 1_000,
            max_modules: 64,
            max_memory: 64 * 1024 * 1024,
        }
    }
}

/// A compiled script with the modules it imports embedded, shared between runs.
#[derive(Debug, Clone)]
pub struct CompiledScript {
    pub ast: Arc<AST>,
    /// Where it came from, for messages: `steps.find.run` or `scripts/x.rhai`.
    pub origin: String,
}

/// A script that did not compile. `line`/`col` are within the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub message: String,
    pub line: Option<usize>,
    pub col: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The script raised an error or hit a limit.
    Error,
    /// `fail(msg)` was called: the run ends as failed.
    Fail,
    TimedOut,
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct ScriptFailure {
    pub kind: FailureKind,
    pub message: String,
}

/// One evaluation: which script, for which run, until when.
pub struct EvalRequest<'a> {
    pub script: &'a CompiledScript,
    pub host: HostHandle,
    pub deadline: Instant,
    pub cancel: tokio_util::sync::CancellationToken,
    /// Read-only context: `params`, `trigger`, `run`, `steps`.
    pub context: Vec<(&'static str, Dynamic)>,
}

/// The shared part of every engine: packages and limits, built once per process.
pub struct Sandbox {
    limits: Limits,
    std: Arc<Module>,
    globals: Arc<Module>,
    statics: Vec<(&'static str, Arc<Module>)>,
}

impl Sandbox {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Sandbox {
            limits,
            std: StandardPackage::new().as_shared_module(),
            globals: Arc::new(api::globals()),
            statics: vec![
                ("log", Arc::new(api::log_module())),
                ("state", Arc::new(api::state_module())),
                ("issues", Arc::new(super::effects::issues_module())),
                ("email", Arc::new(super::effects::email_module())),
                ("http", Arc::new(super::effects::http_module())),
                ("data", Arc::new(super::effects::data_module())),
            ],
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn engine(&self) -> Engine {
        let l = &self.limits;
        let mut e = Engine::new_raw();
        e.register_global_module(self.std.clone());
        e.register_global_module(self.globals.clone());
        for (name, m) in &self.statics {
            e.register_static_module(*name, m.clone());
        }
        e.set_max_operations(l.max_operations)
            .set_max_call_levels(l.max_call_levels)
            .set_max_expr_depths(l.max_expr_depth, l.max_function_expr_depth)
            .set_max_string_size(l.max_string_size)
            .set_max_array_size(l.max_array_size)
            .set_max_map_size(l.max_map_size)
            .set_max_variables(l.max_variables)
            .set_max_functions(l.max_functions)
            .set_max_modules(l.max_modules)
            .set_strict_variables(true)
            .set_optimization_level(OptimizationLevel::Simple)
            .set_module_resolver(NoRuntimeImports);
        e.disable_symbol("eval");
        e.register_type_with_name::<super::Timestamp>("timestamp")
            .register_type_with_name::<super::Span>("duration");
        e
    }

    /// A compiler whose imports resolve inside `scripts_dir` only.
    pub fn compiler(&self, scripts_dir: &Path) -> Compiler {
        let resolver = ScriptsResolver::new(scripts_dir);
        let seen = resolver.seen();
        let mut engine = self.engine();
        engine.set_module_resolver(resolver);
        Compiler { engine, seen }
    }

    /// Run a script to completion on a thread of its own (see
    /// [`super::thread`]); the calling thread (a blocking one) waits.
    ///
    /// Fails when the script raises an error, calls `fail`, exceeds a limit,
    /// passes its deadline, is cancelled or returns a value nested deeper than
    /// values may be stored; the failure says which.
    pub fn eval(&self, req: EvalRequest<'_>) -> Result<Dynamic, ScriptFailure> {
        let stack = super::thread::stack_bytes(&self.limits);
        super::thread::run_on_own_stack(stack, move || {
            let value = self.eval_here(req)?;
            if super::convert::nested_too_deep(&value) {
                // Dropped here: dropping it recurses once per level too.
                drop(value);
                return Err(ScriptFailure {
                    kind: FailureKind::Error,
                    message: super::convert::TOO_DEEP.into(),
                });
            }
            Ok(value)
        })
        .unwrap_or_else(|e| {
            Err(ScriptFailure {
                kind: FailureKind::Error,
                message: format!("the script could not start: no thread ({e})"),
            })
        })
    }

    fn eval_here(&self, req: EvalRequest<'_>) -> Result<Dynamic, ScriptFailure> {
        let mut engine = self.engine();
        let host = req.host.clone();
        let print_host = host.clone();
        engine.on_print(move |s| print_host.ask(|h| h.log(LogLevel::Info, s)));
        let debug_host = host.clone();
        engine.on_debug(move |s, _, _| debug_host.ask(|h| h.log(LogLevel::Debug, s)));
        let (deadline, cancel) = (req.deadline, req.cancel.clone());
        // Counted from here, on this thread: what the script holds.
        let (base, budget) = (super::memory::held(), self.limits.max_memory as isize);
        engine.on_progress(move |ops| {
            if super::memory::held() - base > budget {
                return Some(Dynamic::from(Stop::Memory));
            }
            // Checking the clock costs more than an operation: look every 1,024.
            if ops & 1023 != 0 {
                return None;
            }
            if cancel.is_cancelled() {
                Some(Dynamic::from(Stop::Cancelled))
            } else if Instant::now() >= deadline {
                Some(Dynamic::from(Stop::Deadline))
            } else {
                None
            }
        });
        engine.set_default_tag(Dynamic::from(host));
        let mut scope = Scope::new();
        for (name, value) in req.context {
            scope.push_constant_dynamic(name, value);
        }
        engine
            .eval_ast_with_scope::<Dynamic>(&mut scope, &req.script.ast)
            .map_err(|e| self.explain(*e))
    }

    fn explain(&self, err: EvalAltResult) -> ScriptFailure {
        let l = &self.limits;
        let mut root = &err;
        while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) = root
        {
            root = inner;
        }
        let (kind, message) = match root {
            EvalAltResult::ErrorTerminated(token, _) => match token.clone().try_cast::<Stop>() {
                Some(Stop::Fail(msg)) => (FailureKind::Fail, msg),
                Some(Stop::Cancelled) => (FailureKind::Cancelled, "cancelled".into()),
                Some(Stop::Memory) => (
                    FailureKind::Error,
                    format!(
                        "script held more than {} MiB of memory (script_memory_mib)",
                        l.max_memory / (1024 * 1024)
                    ),
                ),
                _ => (FailureKind::TimedOut, "timed out".into()),
            },
            EvalAltResult::ErrorTooManyOperations(pos) => (
                FailureKind::Error,
                format!(
                    "script exceeded its budget of {} operations at {pos} (an endless loop?)",
                    l.max_operations
                ),
            ),
            EvalAltResult::ErrorStackOverflow(pos) => (
                FailureKind::Error,
                format!(
                    "script called functions more than {} levels deep at {pos} (endless recursion?)",
                    l.max_call_levels
                ),
            ),
            EvalAltResult::ErrorDataTooLarge(what, pos) => (
                FailureKind::Error,
                format!(
                    "{what} over the sandbox limit at {pos} (strings up to {} MiB, arrays and maps up to {} items)",
                    l.max_string_size / (1024 * 1024),
                    l.max_array_size
                ),
            ),
            _ => (FailureKind::Error, err.to_string().replace('\n', "; ")),
        };
        ScriptFailure { kind, message }
    }
}

/// Compiles the scripts of one runbook and remembers which modules they read,
/// so the runbook's version covers them.
pub struct Compiler {
    engine: Engine,
    seen: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Compiler {
    /// Compile `source`, embedding every module it imports.
    ///
    /// Fails with the script's own line and column on a syntax error, an
    /// unknown variable, or a module that cannot be imported.
    pub fn compile(&self, source: &str, origin: &str) -> Result<CompiledScript, CompileError> {
        // Declared as variables, not constants: the optimiser would fold a
        // constant `()` into the script. At run time they are constants.
        let mut scope = Scope::new();
        for name in super::CONTEXT_VARIABLES {
            scope.push(*name, ());
        }
        match self.engine.compile_into_self_contained(&scope, source) {
            Ok(ast) => Ok(CompiledScript {
                ast: Arc::new(ast),
                origin: origin.to_string(),
            }),
            Err(err) => Err(compile_error(*err)),
        }
    }

    /// The scripts read so far: module name (`zendesk.rhai`) → source.
    pub fn scripts(&self) -> BTreeMap<String, String> {
        self.seen.lock().expect("resolver lock").clone()
    }
}

fn compile_error(err: EvalAltResult) -> CompileError {
    let pos = err.position();
    let message = match &err {
        EvalAltResult::ErrorParsing(p, _) => p.to_string(),
        EvalAltResult::ErrorInModule(name, inner, _) => {
            format!(
                "in module \"{name}\": {}",
                inner.to_string().replace('\n', "; ")
            )
        }
        EvalAltResult::ErrorRuntime(d, _) => d.to_string(),
        other => other.to_string().replace('\n', "; "),
    };
    CompileError {
        message,
        line: pos.line(),
        col: pos.position(),
    }
}
