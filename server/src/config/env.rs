//! The `SWITCHYARD_A__B=value` environment overlay on the TOML table.

use super::{Problem, ENV_PREFIX};

/// Applies `SWITCHYARD_A__B__C=value` as `a.b.c = value`. Variables without `__` are not
/// config paths (for example `SWITCHYARD_MASTER_KEY`) and are left alone. Values are read as
/// TOML scalars when they parse as one (`8080`, `true`, `"x"`), else as plain strings.
pub(super) fn apply_env_overlay(
    table: &mut toml::Table,
    env_vars: impl IntoIterator<Item = (String, String)>,
    problems: &mut Vec<Problem>,
) {
    let mut vars: Vec<(String, String)> = env_vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
        .collect();
    vars.sort();
    for (key, raw) in vars {
        let path: Vec<String> = key[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if path.iter().any(|s| s.is_empty()) {
            problems.push(Problem {
                path: key.clone(),
                message: "environment override has an empty path segment".into(),
            });
            continue;
        }
        let value = parse_env_value(&raw);
        if let Err(seg) = set_path(table, &path, value) {
            problems.push(Problem {
                path: key.clone(),
                message: format!("`{seg}` is not a table, cannot override below it"),
            });
        }
    }
}

/// Sets `path` in `table` to `value`, creating tables on the way; fails with the segment that is not a table.
fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Ok(()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => set_path(t, rest, value),
                _ => Err(first.clone()),
            }
        }
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(v) if !v.is_table() && !v.is_array() => v,
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}
