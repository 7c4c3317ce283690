//! `runbookd schema [runbook|config]`: print a JSON Schema for editors.

use super::Exit;
use crate::cli::{SchemaArgs, SchemaOf};

pub fn run(args: &SchemaArgs) -> Exit {
    print!(
        "{}",
        match args.of {
            SchemaOf::Runbook => crate::schema::RUNBOOK,
            SchemaOf::Config => crate::schema::CONFIG,
        }
    );
    Exit::Ok
}
