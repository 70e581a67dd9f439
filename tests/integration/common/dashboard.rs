//! Checks that tie the Grafana dashboard (`dashboards/transcoder.json`) to what the worker
//! exposes: the metric names each panel query references, and the names a Prometheus text
//! exposition contains. A dashboard test asserts the first set is a subset of the second.
//!
//! The PromQL scanner is deliberately small: it skips string literals, label matchers
//! `{...}`, range/subquery brackets `[...]`, Grafana variables (`$__rate_interval`,
//! `${x}`), numbers and durations, keywords with their label lists (`by (...)`,
//! `without (...)`, `on (...)`, `ignoring (...)`, `group_left (...)`, `group_right (...)`),
//! aggregation operators and anything called like a function. What remains are metric names.

#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeSet;

/// Aggregation operators: followed by `by`/`without` or `(`, never metric names here.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords and binary operators that look like identifiers.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "atan2",
    "inf",
    "nan",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Every `expr` of every target of every panel, rows' nested panels included.
pub fn dashboard_exprs(dashboard_json: &Value) -> Vec<String> {
    fn walk(panels: &Value, out: &mut Vec<String>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(expr.to_string());
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard_json["panels"], &mut out);
    out
}

/// The metric names referenced by every panel query of the dashboard.
pub fn dashboard_metric_names(dashboard_json: &Value) -> BTreeSet<String> {
    dashboard_exprs(dashboard_json)
        .iter()
        .flat_map(|e| promql_metric_names(e))
        .collect()
}

/// The metric names one PromQL expression references.
pub fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let is_ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let skip_ws = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' => i = skip_group(&chars, i, '{', '}'),
            '[' => i = skip_group(&chars, i, '[', ']'),
            '#' => {
                // A comment runs to the end of the line.
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '$' => {
                // Grafana variable: $name, ${name}, ${name:fmt}.
                i += 1;
                if i < chars.len() && chars[i] == '{' {
                    i = skip_group(&chars, i, '{', '}');
                } else {
                    while i < chars.len() && is_ident(chars[i]) {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                // Number, hex number or duration (1e-9, 0x1f, 5m, 1h30m).
                i += 1;
                while i < chars.len() {
                    let d = chars[i];
                    let exponent_sign = (d == '+' || d == '-')
                        && matches!(chars[i - 1], 'e' | 'E')
                        && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
                    if d.is_ascii_alphanumeric() || d == '.' || d == '_' || exponent_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
            }
            c if is_ident_start(c) => {
                let start = i;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let lower = word.to_ascii_lowercase();
                let next = skip_ws(i);
                let followed_by_paren = chars.get(next) == Some(&'(');
                if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                    if followed_by_paren {
                        i = skip_group(&chars, next, '(', ')');
                    }
                } else if KEYWORDS.contains(&lower.as_str())
                    || AGGREGATIONS.contains(&lower.as_str())
                    || followed_by_paren
                {
                    // Keyword, operator or function call.
                } else {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Index just past the string literal starting at `i` (handles backslash escapes).
fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() {
        match chars[j] {
            '\\' if quote != '`' => j += 2,
            c if c == quote => return j + 1,
            _ => j += 1,
        }
    }
    chars.len()
}

/// Index just past the group opened at `i`, skipping string literals (and nesting).
fn skip_group(chars: &[char], i: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut j = i;
    while j < chars.len() {
        match chars[j] {
            '"' | '\'' | '`' => {
                j = skip_string(chars, j);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    chars.len()
}

/// The names in a Prometheus text exposition: family names from `# TYPE` lines and every
/// sample's name (so a histogram `x` gives `x`, `x_bucket`, `x_sum` and `x_count`).
pub fn exposed_metric_names(prometheus_text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in prometheus_text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut words = rest.split_whitespace();
            if words.next() == Some("TYPE") {
                if let Some(name) = words.next() {
                    names.insert(name.to_string());
                }
            }
            continue;
        }
        let end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .unwrap_or(line.len());
        if end > 0 {
            names.insert(line[..end].to_string());
        }
    }
    names
}
