//! The code's layout, checked as a newcomer would read it (ARCHITECTURE.md, "Code map"):
//! no function is longer than a reader can hold (none over 120 lines, at most six over 80
//! in the crates, none over 80 in the CLI), and no two files import each other, directly
//! or through others.
//!
//! Both checks read the sources with a small Rust lexer (comments, strings, raw strings
//! and char literals skipped), so a brace or a path inside text never counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates' source roots, by the name `crate::` means in them.
const CRATES: [&str; 6] = ["src", "engine/src", "kernels/src", "sim/src", "chaos/src", "reports/src"];

/// Functions of the crates that may be over 80 lines (none may be over 120).
const MAX_OVER_80: usize = 6;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The source with comments, string, char and raw-string contents blanked (lengths and
/// lines kept), so that braces and paths are only the code's.
fn code_only(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let blank = |b: u8| if b == b'\n' { b'\n' } else { b' ' };
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.starts_with(b"//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            while i < bytes.len() {
                if bytes[i..].starts_with(b"/*") {
                    depth += 1;
                    out.extend(b"  ");
                    i += 2;
                } else if bytes[i..].starts_with(b"*/") {
                    depth -= 1;
                    out.extend(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(bytes[i]));
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(rest) {
            let open = 2 + hashes + usize::from(rest[0] == b'b');
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            out.extend(&rest[..open]);
            i += open;
            while i < bytes.len() && !bytes[i..].starts_with(&close) {
                out.push(blank(bytes[i]));
                i += 1;
            }
            out.extend(&close);
            i += close.len();
        } else if bytes[i] == b'"' {
            out.push(b'"');
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                let step = if bytes[i] == b'\\' { 2 } else { 1 };
                for _ in 0..step.min(bytes.len() - i) {
                    out.push(blank(bytes[i]));
                    i += 1;
                }
            }
            out.push(b'"');
            i += 1;
        } else if bytes[i] == b'\'' && is_char_literal(rest) {
            let len = rest[1..].iter().skip(1).position(|b| *b == b'\'').map_or(1, |p| p + 3);
            out.push(b'\'');
            out.extend(std::iter::repeat_n(b' ', len - 2));
            out.push(b'\'');
            i += len;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `r"`, `r#"`, `br##"`...: the number of hashes of a raw string that starts here.
fn raw_string_start(rest: &[u8]) -> Option<usize> {
    let after = rest.strip_prefix(b"br").or_else(|| rest.strip_prefix(b"r"))?;
    let hashes = after.iter().take_while(|b| **b == b'#').count();
    (after.get(hashes) == Some(&b'"')).then_some(hashes)
}

/// `'x'` or `'\n'` (a char literal), not `'a` (a lifetime).
fn is_char_literal(rest: &[u8]) -> bool {
    match rest.get(1) {
        Some(b'\\') => true,
        Some(_) => {
            let width = std::str::from_utf8(&rest[1..rest.len().min(5)])
                .ok()
                .or_else(|| std::str::from_utf8(&rest[1..rest.len().min(2)]).ok())
                .and_then(|s| s.chars().next())
                .map_or(1, char::len_utf8);
            rest.get(1 + width) == Some(&b'\'')
        }
        None => false,
    }
}

/// Every function with a body: (lines from its `fn` line to its closing brace, name).
fn functions(code: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let Some(name) = fn_name(line) else { continue };
        let mut depth = 0i32;
        let mut opened = false;
        for (offset, body) in lines[start..].iter().enumerate() {
            for c in body.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if !opened && body.trim_end().ends_with(';') {
                break;
            }
            if opened && depth <= 0 {
                found.push((offset + 1, name.to_string()));
                break;
            }
        }
    }
    found
}

/// The name of a function declared on this line.
fn fn_name(line: &str) -> Option<&str> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "fn")?;
    let qualifiers = ["pub", "pub(crate)", "pub(super)", "const", "async", "unsafe", "extern", "default"];
    if !words[..at].iter().all(|w| qualifiers.contains(w) || w.starts_with("pub(")) {
        return None;
    }
    let name = words.get(at + 1)?;
    Some(name.split(['(', '<']).next().unwrap_or(name))
}

#[test]
fn functions_stay_short() {
    let mut over_80 = Vec::new();
    let mut problems = Vec::new();
    for dir in CRATES {
        let mut files = Vec::new();
        rust_files(&root().join(dir), &mut files);
        for file in files {
            let code = code_only(&std::fs::read_to_string(&file).unwrap());
            for (lines, name) in functions(&code) {
                let at = format!("{} {name} ({lines} lines)", file.strip_prefix(root()).unwrap().display());
                if lines > 120 || (lines > 80 && dir == "src") {
                    problems.push(at);
                } else if lines > 80 {
                    over_80.push(at);
                }
            }
        }
    }
    assert!(problems.is_empty(), "functions too long: {problems:#?}");
    assert!(over_80.len() <= MAX_OVER_80, "{} functions over 80 lines: {over_80:#?}", over_80.len());
}

/// A file's module path in its crate (`node::coordinator::admission`), `[]` for the root.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// The paths a file names: `crate::a::b`, `super::c`, `self::d` and `child::e` for its own
/// modules, in `use` declarations (groups `a::{b, c::d}` expanded) and in code, as
/// absolute module paths.
fn paths_named(code: &str, module: &[String], children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut raw: Vec<String> = Vec::new();
    for (at, _) in code.match_indices("use ") {
        let starts_word = at == 0 || !code.as_bytes()[at - 1].is_ascii_alphanumeric();
        let Some(end) = code[at..].find(';') else { continue };
        if starts_word {
            let declared: String = code[at + 4..at + end].chars().filter(|c| !c.is_whitespace()).collect();
            raw.extend(expand(&declared));
        }
    }
    let words = code.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'));
    raw.extend(words.filter(|w| w.contains("::")).map(str::to_string));
    let mut named = Vec::new();
    for path in raw {
        let mut parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        let Some(first) = parts.first().copied() else { continue };
        // Where the path starts: `super` of module `a::b` (file `a/b.rs` or `a/b/mod.rs`)
        // is `a`.
        let mut base: Vec<String> = match first {
            "crate" => Vec::new(),
            "self" => module.to_vec(),
            "super" => {
                let mut up = module.to_vec();
                while parts.first() == Some(&"super") {
                    up.pop();
                    parts.remove(0);
                }
                parts.insert(0, "super");
                up
            }
            child if children.contains(child) => module.to_vec(),
            _ => continue,
        };
        let skip = usize::from(matches!(first, "crate" | "self" | "super"));
        base.extend(parts.iter().skip(skip).map(|p| p.to_string()));
        named.push(base);
    }
    named
}

/// `a::{b, c::{d, e}}` as `a::b`, `a::c::d`, `a::c::e`; a plain path as itself.
fn expand(token: &str) -> Vec<String> {
    let Some(open) = token.find('{') else {
        return token.split(',').map(str::to_string).collect();
    };
    let prefix = &token[..open];
    let Some(close) = token.rfind('}') else { return vec![prefix.to_string()] };
    let inner = &token[open + 1..close];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items.into_iter().filter(|i| !i.is_empty()).flat_map(expand).map(|i| format!("{prefix}{i}")).collect()
}

/// The file a module path lands in: the longest prefix that is a module of the crate.
fn file_of(path: &[String], modules: &BTreeMap<Vec<String>, PathBuf>) -> Option<PathBuf> {
    (0..=path.len()).rev().find_map(|n| modules.get(&path[..n]).cloned())
}

#[test]
fn no_two_files_import_each_other() {
    let mut circles = Vec::new();
    for dir in CRATES {
        let src = root().join(dir);
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeMap<Vec<String>, PathBuf> = files.iter().map(|f| (module_of(&src, f), f.clone())).collect();
        let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
        for file in &files {
            let module = module_of(&src, file);
            let code = code_only(&std::fs::read_to_string(file).unwrap());
            let children: BTreeSet<String> = modules
                .keys()
                .filter(|m| m.len() == module.len() + 1 && m.starts_with(&module))
                .map(|m| m.last().unwrap().clone())
                .collect();
            for path in paths_named(&code, &module, &children) {
                let Some(target) = file_of(&path, &modules) else { continue };
                let target_module = module_of(&src, &target);
                // A module's own ancestors are the module tree, not an import between peers.
                if target == *file || module.starts_with(&target_module) {
                    continue;
                }
                edges.entry(file.clone()).or_default().insert(target);
            }
        }
        circles.extend(find_cycles(&edges).into_iter().map(|cycle| {
            cycle.iter().map(|f| f.strip_prefix(root()).unwrap().display().to_string()).collect::<Vec<_>>().join(" -> ")
        }));
    }
    assert!(circles.is_empty(), "files that import each other: {circles:#?}");
}

/// One cycle through each strongly connected group of files, if any.
fn find_cycles(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    let mut cycles = Vec::new();
    let mut reported: BTreeSet<PathBuf> = BTreeSet::new();
    for start in edges.keys() {
        if reported.contains(start) {
            continue;
        }
        // A path back to `start`, breadth first.
        let mut previous: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.clone()]);
        while let Some(at) = queue.pop_front() {
            for next in edges.get(&at).into_iter().flatten() {
                if next == start {
                    let mut cycle = vec![at.clone()];
                    while let Some(p) = previous.get(cycle.last().unwrap()) {
                        cycle.push(p.clone());
                    }
                    cycle.reverse();
                    cycle.push(start.clone());
                    reported.extend(cycle.iter().cloned());
                    cycles.push(cycle);
                    queue.clear();
                    break;
                }
                if !previous.contains_key(next) && next != start {
                    previous.insert(next.clone(), at.clone());
                    queue.push_back(next.clone());
                }
            }
        }
    }
    cycles
}

/// Canaries: each check fails on what it exists to catch.
#[test]
fn the_layout_checks_can_fail() {
    let long = format!("fn long() {{\n{}}}\n", "    let x = 1;\n".repeat(130));
    assert_eq!(functions(&code_only(&long)), [(132, "long".to_string())]);
    let hidden = "fn f() {\n    let s = \"}}}\";\n    let r = r#\"{{\"#;\n    // }\n    let c = '{';\n}\n";
    assert_eq!(functions(&code_only(hidden)), [(6, "f".to_string())], "text never counts as braces");
    let edges = BTreeMap::from([
        (PathBuf::from("a.rs"), BTreeSet::from([PathBuf::from("b.rs")])),
        (PathBuf::from("b.rs"), BTreeSet::from([PathBuf::from("c.rs")])),
        (PathBuf::from("c.rs"), BTreeSet::from([PathBuf::from("a.rs")])),
    ]);
    assert_eq!(find_cycles(&edges).len(), 1);
    let children = BTreeSet::from(["admission".to_string()]);
    let module = vec!["node".to_string(), "coordinator".to_string()];
    let named = paths_named("use super::{NodeContext, autoscale::Fleet};\nuse admission::Claim;", &module, &children);
    assert!(named.contains(&vec!["node".to_string(), "NodeContext".to_string()]), "{named:?}");
    assert!(named.contains(&vec!["node".into(), "autoscale".into(), "Fleet".into()]), "{named:?}");
    assert!(
        named.contains(&vec!["node".into(), "coordinator".into(), "admission".into(), "Claim".into()]),
        "{named:?}"
    );
}
