//! `tool MODE --key value --flag ...`, no more.

use std::collections::HashMap;
use std::str::FromStr;

pub struct Args {
    pub mode: String,
    values: HashMap<String, Vec<String>>,
}

impl Args {
    pub fn parse() -> Self {
        Self::from(std::env::args().skip(1).collect())
    }

    pub fn from(argv: Vec<String>) -> Self {
        let mut mode = String::new();
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        let mut i = 0;
        while i < argv.len() {
            let a = &argv[i];
            if let Some(key) = a.strip_prefix("--") {
                let value = match argv.get(i + 1) {
                    Some(v) if !v.starts_with("--") => {
                        i += 1;
                        v.clone()
                    }
                    _ => "true".to_owned(),
                };
                values.entry(key.to_owned()).or_default().push(value);
            } else if mode.is_empty() {
                mode = a.clone();
            } else {
                panic!("unexpected argument {a}");
            }
            i += 1;
        }
        Self { mode, values }
    }

    pub fn get<T: FromStr>(&self, key: &str, default: T) -> T
    where
        T::Err: std::fmt::Debug,
    {
        match self.values.get(key).and_then(|v| v.last()) {
            Some(v) => v.parse().unwrap_or_else(|e| panic!("--{key} {v}: {e:?}")),
            None => default,
        }
    }

    pub fn str(&self, key: &str) -> Option<String> {
        self.values.get(key).and_then(|v| v.last()).cloned()
    }

    pub fn req(&self, key: &str) -> String {
        self.str(key)
            .unwrap_or_else(|| panic!("--{key} is required"))
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.values.get(key).cloned().unwrap_or_default()
    }

    pub fn flag(&self, key: &str) -> bool {
        self.values
            .get(key)
            .and_then(|v| v.last())
            .is_some_and(|v| v != "false" && v != "0")
    }
}

/// "16KiB", "1MiB", "1024", "1k", "2m".
pub fn parse_size(s: &str) -> usize {
    let lower = s.to_ascii_lowercase();
    let (num, mult) = if let Some(n) = lower.strip_suffix("kib").or(lower.strip_suffix('k')) {
        (n, 1024)
    } else if let Some(n) = lower.strip_suffix("mib").or(lower.strip_suffix('m')) {
        (n, 1024 * 1024)
    } else {
        (lower.as_str(), 1)
    };
    num.trim().parse::<usize>().expect("a size") * mult
}
