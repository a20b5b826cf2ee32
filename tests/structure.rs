//! The code's structure, checked on every test run (ARCHITECTURE.md, "How the structure is
//! checked"): the top-level modules of `src/` import each other without a cycle; the domain
//! modules do no I/O and never read the clock; only `store` holds SQL; only the modules that
//! serve HTTP use the HTTP server's crates.
//!
//! A module's imports are read from its source: every `crate::NAME` path (also `crate::{A, B}`)
//! in a file of module `X` (`src/X.rs` or under `src/X/`), whole-line comments skipped, is an
//! edge `X -> NAME`. The crate roots (`lib.rs`, `main.rs`) are no module of the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The modules that must stay pure: no database, HTTP, secrets backend or async runtime.
const DOMAIN: &[&str] = &["event", "redact", "baseline", "detect", "policy"];
/// Crates the domain must not name: I/O, and the runtime that drives it.
const IO_CRATES: &[&str] = &[
    "sqlx",
    "axum",
    "hyper",
    "tonic",
    "reqwest",
    "vaultrs",
    "aws_sdk_secretsmanager",
    "tokio",
];
/// What writes SQL: only `store` does.
const SQL: &[&str] = &["sqlx::query", "sqlx::query_as", "sqlx::query_scalar", "QueryBuilder"];
/// The modules that serve HTTP (and OTLP/gRPC), and the crates only they may use.
const SERVING: &[&str] = &["http", "server", "ingest", "api", "dashboard", "openapi", "app"];
const HTTP_SERVER_CRATES: &[&str] = &["axum", "hyper", "hyper_util", "tonic", "tower", "tower_http"];
/// Ways to read the clock; in the domain, time is a parameter.
const CLOCKS: &[&str] = &["Utc::now", "Local::now", "SystemTime::now", "Instant::now"];

/// Where one module refers to another: the file and line.
type Site = (PathBuf, usize);
/// module → (module it imports → first place it does).
type Graph = BTreeMap<String, BTreeMap<String, Site>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file under `src/` belongs to; `None` for the crate roots.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let first = file.strip_prefix(src).ok()?.components().next()?;
    let name = first.as_os_str().to_str()?.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The lines of a source that are product code: whole-line comments (`//`, `///`, `//!`)
/// dropped, and nothing from the file's unit-test module (`#[cfg(test)]` then `mod tests`) on,
/// whose imports (`crate::testing` among them) are the tests' and not the module's.
fn code_lines(source: &str) -> impl Iterator<Item = (usize, &str)> {
    let lines: Vec<&str> = source.lines().collect();
    let tests = lines
        .windows(2)
        .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].trim_start().starts_with("mod tests"))
        .unwrap_or(lines.len());
    lines
        .into_iter()
        .take(tests)
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l))
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The top-level modules a line names through `crate::`.
fn crate_refs(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in line.match_indices("crate::") {
        if line[..at].chars().next_back().is_some_and(is_ident) {
            continue; // `vigil_crate::` or the like
        }
        let rest = &line[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::b, c}`: the names at the group's first level.
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && depth == 0 && is_ident(c) => {
                        let name: String = group[i..].chars().take_while(|c| is_ident(*c)).collect();
                        found.push(name);
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

/// Whether `line` names `word` whole: not as part of a longer identifier (`tokio` is named by
/// `tokio::spawn`, not by `tokio_like`).
fn names(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(at, _)| {
        !line[..at].chars().next_back().is_some_and(is_ident)
            && !line[at + word.len()..].chars().next().is_some_and(is_ident)
    })
}

/// Every line of the modules `select` takes that names one of `words`, as `file:line: word`.
fn named_in(select: impl Fn(&str) -> bool, words: &[&str]) -> Vec<String> {
    let src = src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files.iter().filter(|f| module_of(&src, f).is_some_and(|m| select(&m))) {
        let source = fs::read_to_string(file).expect("a readable source file");
        for (line_no, line) in code_lines(&source) {
            for word in words.iter().filter(|w| names(line, w)) {
                found.push(format!("{}:{line_no}: {word}", file.display()));
            }
        }
    }
    found
}

/// The import graph of the top-level modules of `src`.
fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(src, f)).collect();
    let mut graph = Graph::new();
    for file in &files {
        let Some(from) = module_of(src, file) else {
            continue;
        };
        let source = fs::read_to_string(file).expect("a readable source file");
        let edges = graph.entry(from.clone()).or_default();
        for (line_no, line) in code_lines(&source) {
            for to in crate_refs(line) {
                if to != from && modules.contains(&to) {
                    edges.entry(to).or_insert_with(|| (file.clone(), line_no));
                }
            }
        }
    }
    graph
}

/// Every cycle a depth-first walk meets, each as its modules in order (the first repeated at
/// the end).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    fn walk(
        node: &str,
        graph: &Graph,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(|e| e.keys()) {
            if let Some(at) = stack.iter().position(|n| n == next) {
                let mut cycle = stack[at..].to_vec();
                cycle.push(next.clone());
                found.push(cycle);
            } else if !done.contains(next) {
                walk(next, graph, stack, done, found);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
    }
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    for node in graph.keys() {
        if !done.contains(node) {
            walk(node, graph, &mut Vec::new(), &mut done, &mut found);
        }
    }
    found
}

/// A cycle as a person fixes it: each step with the first line that makes it.
fn describe(cycle: &[String], graph: &Graph) -> String {
    let steps: Vec<String> = cycle
        .windows(2)
        .map(|pair| {
            let (file, line) = &graph[&pair[0]][&pair[1]];
            format!("  {} -> {} ({}:{line})", pair[0], pair[1], file.display())
        })
        .collect();
    format!("{}\n{}", cycle.join(" -> "), steps.join("\n"))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let graph = graph(&src());
    assert!(
        graph.len() > 10,
        "the walk found the modules of src/: {:?}",
        graph.keys()
    );
    let found = cycles(&graph);
    let report: Vec<String> = found.iter().map(|c| describe(c, &graph)).collect();
    assert!(
        found.is_empty(),
        "import cycles among src/'s modules:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_domain_does_no_io_and_reads_no_clock() {
    let words: Vec<&str> = IO_CRATES.iter().chain(CLOCKS).copied().collect();
    let found = named_in(|m| DOMAIN.contains(&m), &words);
    assert!(
        found.is_empty(),
        "the domain does I/O or reads the clock:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_store_holds_sql_and_only_the_serving_modules_know_the_http_server() {
    let sql = named_in(|m| m != "store", SQL);
    assert!(sql.is_empty(), "SQL outside store:\n{}", sql.join("\n"));
    let http = named_in(|m| !SERVING.contains(&m), HTTP_SERVER_CRATES);
    assert!(
        http.is_empty(),
        "the HTTP server's crates outside {SERVING:?}:\n{}",
        http.join("\n")
    );
}

#[test]
fn the_checks_see_what_they_look_for() {
    assert_eq!(crate_refs("use crate::store::incidents::DbIncident;"), ["store"]);
    assert_eq!(
        crate_refs("use crate::{alert::Sink, api, http::{auth, fair}};"),
        ["alert", "api", "http"]
    );
    assert_eq!(crate_refs("let x = crate::app::routes(state);"), ["app"]);
    assert!(crate_refs("use some_crate::thing;").is_empty());
    assert!(names("use sqlx::PgPool;", "sqlx"));
    assert!(!names("use mysqlx::PgPool;", "sqlx"));
    assert!(!names("let tokio_like = 1;", "tokio"));
    assert!(names("let now = chrono::Utc::now();", "Utc::now"));
    assert!(!names("let t = MyUtc::now();", "Utc::now"));
    assert!(names("sqlx::query_as(\"select 1\")", "sqlx::query_as"));
    assert!(!names("sqlx::query_as(\"select 1\")", "sqlx::query"));
    assert_eq!(code_lines("/// crate::app\nuse crate::store;").count(), 1);
    assert_eq!(
        code_lines("use crate::store;\n#[cfg(test)]\nmod tests {\n    use crate::testing::call;\n}").count(),
        1
    );

    let site = || (PathBuf::from("x.rs"), 1);
    let mut graph = Graph::new();
    graph.entry("a".into()).or_default().insert("b".into(), site());
    graph.entry("b".into()).or_default().insert("c".into(), site());
    assert!(cycles(&graph).is_empty());
    graph.entry("c".into()).or_default().insert("a".into(), site());
    assert_eq!(cycles(&graph), [["a", "b", "c", "a"]]);
}
