//! Reading a `.env` file into variables, with errors that name the line, never its content.

use std::collections::HashMap;

use super::{ConfigError, invalid};

/// The variables of a `.env` file, if there is one at `path`. A line that is not
/// `NAME=value` (or a comment) stops startup with an error naming the file and the line
/// number, never the line's content (it may hold a secret).
pub fn read_dot_env(path: &std::path::Path) -> Result<HashMap<String, String>, ConfigError> {
    const VAR: &str = ".env";
    let content = match std::fs::read_to_string(path) {
        Ok(content) => content,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(invalid(VAR, format!("cannot be read: {}", e.kind()))),
    };
    let mut vars = HashMap::new();
    for item in dotenvy::from_read_iter(content.as_bytes()) {
        match item {
            Ok((k, v)) => {
                vars.insert(k, v);
            }
            Err(dotenvy::Error::LineParse(text, _)) => {
                let line = line_number_of(&content, &text)
                    .map_or_else(|| "a line".to_owned(), |n| format!("line {n}"));
                return Err(invalid(
                    VAR,
                    format!("{line} is malformed (expected NAME=value or a # comment)"),
                ));
            }
            Err(_) => return Err(invalid(VAR, "cannot be parsed")),
        }
    }
    Ok(vars)
}

/// The 1-based number of the line of `content` where the unparsable `text` starts.
fn line_number_of(content: &str, text: &str) -> Option<usize> {
    let first = text.lines().next().unwrap_or(text).trim();
    if first.is_empty() {
        return None;
    }
    content
        .lines()
        .position(|l| l.contains(first))
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_env_errors_name_the_line_not_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "A=1\n\nB 'hunter2\n").unwrap();
        let e = read_dot_env(&path).unwrap_err().to_string();
        assert!(e.starts_with(".env: line 3"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        std::fs::write(&path, "A=1\n# c\nB=\"two\"\n").unwrap();
        let v = read_dot_env(&path).unwrap();
        assert_eq!(v.get("B").map(String::as_str), Some("two"));
        assert!(read_dot_env(&dir.path().join("none")).unwrap().is_empty());
    }
}
