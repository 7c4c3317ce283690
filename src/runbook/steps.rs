//! Validation of `steps:` (or the one-step `run:`): names, scripts inline or
//! from `scripts/`, conditions and timeouts.

use std::time::Duration;

use super::model::*;
use super::spec::{RunbookSpec, StepSpec};
use super::validate::{Ctx, Loc, is_identifier};
use super::yaml_index::Pos;
use crate::script::CompiledScript;

pub(super) fn steps(spec: &RunbookSpec, ctx: &mut Ctx) -> Vec<Step> {
    let specs: Vec<(String, &StepSpec)> = match (&spec.steps, &spec.run) {
        (Some(_), Some(_)) => {
            ctx.error(
                Loc::Key("run".into()),
                "a runbook has `steps:` or a top-level `run:`, not both",
                None,
            );
            return Vec::new();
        }
        (None, None) => {
            ctx.error(
                Loc::At(Pos { line: 1, col: 1 }),
                "a runbook needs `steps:` (a list of named scripts) or a top-level `run:` script",
                None,
            );
            return Vec::new();
        }
        (None, Some(source)) => {
            return ctx
                .compile_inline("run", source)
                .map(|script| {
                    vec![Step {
                        name: "main".into(),
                        description: None,
                        script,
                        condition: None,
                        timeout: None,
                        continue_on_error: false,
                    }]
                })
                .unwrap_or_default();
        }
        (Some(list), None) => list
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("steps.{i}"), s))
            .collect(),
    };
    if specs.is_empty() {
        ctx.error(
            Loc::Value("steps".into()),
            "`steps:` is empty; a runbook needs at least one step",
            None,
        );
    }
    let mut out: Vec<Step> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (path, s) in specs {
        let name = match &s.name {
            Some(n) if is_identifier(&n.replace('-', "_")) => n.clone(),
            Some(n) => {
                ctx.error(
                    Loc::Value(format!("{path}.name")),
                    format!("step name \"{n}\" must be a word of letters, digits, _ and -"),
                    None,
                );
                continue;
            }
            None => {
                ctx.error(
                    Loc::Value(path.clone()),
                    "every step needs a `name:`; later steps read its value as steps.<name>",
                    None,
                );
                continue;
            }
        };
        if seen.contains(&name) {
            ctx.error(
                Loc::Value(format!("{path}.name")),
                format!("step name \"{name}\" is used twice"),
                None,
            );
        }
        seen.push(name.clone());
        let script = match (&s.run, &s.file) {
            (Some(source), None) => ctx.compile_inline(&format!("{path}.run"), source),
            (None, Some(file)) => step_file(&path, file, ctx),
            (Some(_), Some(_)) => {
                ctx.error(
                    Loc::Key(format!("{path}.file")),
                    format!("step {name} has both `run:` and `file:`; keep one"),
                    None,
                );
                None
            }
            (None, None) => {
                ctx.error(
                    Loc::Value(path.clone()),
                    format!(
                        "step {name} needs `run:` (a script) or `file:` (a script in scripts/)"
                    ),
                    None,
                );
                None
            }
        };
        let condition = s
            .condition
            .as_deref()
            .and_then(|c| ctx.compile_inline(&format!("{path}.if"), c));
        let timeout = s
            .timeout
            .as_deref()
            .and_then(|t| ctx.duration(&format!("{path}.timeout"), t, Duration::from_millis(100)));
        if let Some(script) = script {
            out.push(Step {
                name,
                description: s.description.clone(),
                script,
                condition,
                timeout,
                continue_on_error: s.continue_on_error.unwrap_or(false),
            });
        }
    }
    out
}

fn step_file(path: &str, file: &str, ctx: &mut Ctx) -> Option<CompiledScript> {
    let rel = file.strip_prefix("scripts/").unwrap_or(file);
    let (name, source) = match crate::script::read_script(ctx.scripts_dir, rel) {
        Ok(found) => found,
        Err(why) => {
            ctx.error(
                Loc::Value(format!("{path}.file")),
                format!("`file: {file}` refused: {why}"),
                None,
            );
            return None;
        }
    };
    let full = ctx.scripts_dir.join(&name);
    match ctx.compiler.compile(&source, &format!("scripts/{name}")) {
        Ok(s) => {
            ctx.file_scripts.insert(name, source);
            Some(s)
        }
        Err(e) => {
            let pos = Pos {
                line: e.line.unwrap_or(1),
                col: e.col.unwrap_or(1),
            };
            ctx.error(
                Loc::File(full, pos),
                format!("script does not compile: {}", e.message),
                None,
            );
            None
        }
    }
}
