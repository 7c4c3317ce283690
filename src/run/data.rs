//! `data::read(name)`: the one file access scripts have. It opens files of
//! the deployment's `data/` directory only, read-only, and parses them by
//! extension: CSV → an array of maps (one per row, keyed by the header),
//! YAML and JSON → their value.

use std::io::Read;
use std::path::{Component, Path};

use serde_json::{Map, Value};

/// A data file is at most this large.
pub const MAX_DATA_BYTES: u64 = 10 * 1024 * 1024;

/// Read and parse `name`, a path relative to `dir`.
///
/// Fails with a sentence naming the file and the cause: a name that leaves
/// the directory (absolute, `..`, or a symlink pointing out), a missing or
/// oversized file, an extension other than csv/yaml/yml/json, or a parse
/// error with its position.
pub fn read(dir: &Path, name: &str) -> Result<Value, String> {
    let what = format!("data::read(\"{name}\")");
    let rel = Path::new(name);
    if name.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!(
            "{what}: name a file inside the data directory, such as \"grants.csv\" (no absolute paths, no `..`)"
        ));
    }
    let root = dir.canonicalize().map_err(|e| {
        format!(
            "{what}: the data directory {} cannot be opened: {e}",
            dir.display()
        )
    })?;
    let path = root
        .join(rel)
        .canonicalize()
        .map_err(|e| format!("{what}: {} cannot be opened: {e}", dir.join(rel).display()))?;
    if !path.starts_with(&root) {
        return Err(format!(
            "{what}: the file leads outside the data directory {}",
            dir.display()
        ));
    }
    let file = std::fs::File::open(&path)
        .map_err(|e| format!("{what}: {} cannot be opened: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{what}: {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{what}: {} is not a file", path.display()));
    }
    if meta.len() > MAX_DATA_BYTES {
        return Err(format!(
            "{what}: the file is {} bytes; data files are at most 10 MiB",
            meta.len()
        ));
    }
    let mut text = String::new();
    file.take(MAX_DATA_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| format!("{what}: the file is not UTF-8 text: {e}"))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "csv" => csv_rows(&text).map_err(|e| format!("{what}: {e}")),
        "json" => serde_json::from_str(&text).map_err(|e| format!("{what}: not valid JSON: {e}")),
        "yaml" | "yml" => {
            let v: serde_yaml::Value =
                serde_yaml::from_str(&text).map_err(|e| format!("{what}: not valid YAML: {e}"))?;
            serde_json::to_value(v).map_err(|e| format!("{what}: {e}"))
        }
        _ => Err(format!(
            "{what}: only .csv, .yaml, .yml and .json files can be read"
        )),
    }
}

/// Rows as maps from the header's names to the cells' text.
fn csv_rows(text: &str) -> Result<Value, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| format!("the header line cannot be read: {e}"))?
        .clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| match e.position() {
            Some(p) => format!("line {}: {e}", p.line()),
            None => e.to_string(),
        })?;
        let row: Map<String, Value> = headers
            .iter()
            .zip(record.iter())
            .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
            .collect();
        rows.push(Value::Object(row));
    }
    Ok(Value::Array(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_csv_yaml_and_json_and_nothing_outside() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(
            data.join("grants.csv"),
            "user,role\nalice@example.com, Admin\n\"bob, jr\",Viewer\n",
        )
        .unwrap();
        std::fs::write(data.join("owners.yaml"), "a: [1, 2]\n").unwrap();
        std::fs::write(data.join("x.json"), "{\"n\": 3}").unwrap();
        std::fs::write(data.join("notes.txt"), "hi").unwrap();
        std::fs::write(dir.path().join("secret.json"), "{}").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.json"), data.join("link.json")).unwrap();

        assert_eq!(
            read(&data, "grants.csv").unwrap(),
            serde_json::json!([{"user": "alice@example.com", "role": "Admin"}, {"user": "bob, jr", "role": "Viewer"}])
        );
        assert_eq!(
            read(&data, "owners.yaml").unwrap(),
            serde_json::json!({"a": [1, 2]})
        );
        assert_eq!(read(&data, "x.json").unwrap()["n"], 3);
        for (name, says) in [
            ("../secret.json", "no `..`"),
            ("/etc/passwd", "no absolute paths"),
            ("link.json", "outside the data directory"),
            ("notes.txt", "only .csv"),
            ("missing.csv", "cannot be opened"),
            ("", "name a file"),
        ] {
            let e = read(&data, name).unwrap_err();
            assert!(e.contains(says), "{name}: {e}");
        }
        std::fs::write(data.join("bad.csv"), "a,b\n1,2\n3\n").unwrap();
        let e = read(&data, "bad.csv").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
    }
}
