//! JSON Schemas of the runbook format and of `runbookd.yaml`, printed by
//! `runbookd schema` for editors (the YAML language server validates and
//! completes as people type).
//!
//! They are written by hand, with the descriptions and choices a person
//! needs, which the serde mirrors (`runbook::spec`, `config`) do not carry;
//! the tests below keep their keys the same as the mirrors'.

/// The schema of a runbook file.
pub const RUNBOOK: &str = include_str!("runbook.schema.json");
/// The schema of `runbookd.yaml`.
pub const CONFIG: &str = include_str!("config.schema.json");

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    fn keys(schema: &str, pointer: &str) -> BTreeSet<String> {
        let v: serde_json::Value = serde_json::from_str(schema).expect("the schema is JSON");
        v.pointer(pointer)
            .and_then(|p| p.as_object())
            .unwrap_or_else(|| panic!("{pointer} is an object"))
            .keys()
            .cloned()
            .collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_schemas_name_the_keys_the_files_are_read_with() {
        assert_eq!(
            keys(super::RUNBOOK, "/properties"),
            set(crate::runbook::spec::TOP_LEVEL_KEYS)
        );
        assert_eq!(keys(super::CONFIG, "/properties"), set(crate::config::KEYS));
        assert_eq!(
            keys(super::CONFIG, "/definitions/runbook_settings/properties"),
            set(crate::runbook::settings::KEYS)
        );
    }
}
