//! The server's module structure, as its front page states it: no import
//! circle between its modules, the network layer imports no front end and
//! no storage engine, engines import no front end, and only the engine
//! module asks which storage model is in use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `server/src` and every Rust file under it.
fn source_files() -> (PathBuf, Vec<PathBuf>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("server/src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    (src, files)
}

/// Each top-level module of `server/src` (a file, or a folder's files) and
/// the top-level modules it names through `crate::` outside comments and
/// its unit tests. `lib`, `main` and the fuzzing support are left out: they
/// tie the modules together.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let (src, files) = source_files();
    let mut modules: BTreeMap<String, String> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative.components().next().expect("a path").as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if ["lib", "main", "fuzzing"].contains(&module.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("a source file");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let code: Vec<&str> = code.lines().filter(|line| !line.trim_start().starts_with("//")).collect();
        modules.entry(module).or_default().push_str(&code.join("\n"));
    }
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(module, code)| {
            let mut named = BTreeSet::new();
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    Some(group) => group.split('}').next().unwrap_or_default().split(',').collect(),
                    None => vec![rest],
                };
                for name in names {
                    let name: String =
                        name.trim().chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                    if known.contains(&name) && name != *module {
                        named.insert(name);
                    }
                }
            }
            (module.clone(), named)
        })
        .collect()
}

/// A path of imports from `from` back to itself, if there is one.
fn circle(from: &str, graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    let mut path = vec![from.to_string()];
    let mut seen = BTreeSet::new();
    fn walk(
        at: &str,
        from: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == from {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(next, from, graph, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    walk(from, from, graph, &mut path, &mut seen).then_some(path)
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = imports();
    assert!(graph.len() > 10, "the modules were found: {graph:?}");
    assert!(graph["app"].contains("engine"), "imports are read: {:?}", graph["app"]);
    for module in graph.keys() {
        if let Some(path) = circle(module, &graph) {
            panic!("an import circle: {}", path.join(" -> "));
        }
    }
}

#[test]
fn the_network_layer_names_no_front_end_and_no_engine() {
    let graph = imports();
    for other in ["app", "http", "mailbox", "engine", "postgres", "storage", "sqlite"] {
        assert!(!graph["net"].contains(other), "net imports {other}: {:?}", graph["net"]);
    }
}

#[test]
fn engines_name_no_front_end() {
    let graph = imports();
    for engine in ["engine", "storage", "sqlite", "postgres"] {
        for front in ["app", "http", "mailbox", "net"] {
            assert!(!graph[engine].contains(front), "{engine} imports {front}: {:?}", graph[engine]);
        }
    }
}

#[test]
fn only_the_engine_module_asks_which_storage_model_is_in_use() {
    let (src, files) = source_files();
    let askers: Vec<String> = files
        .iter()
        .filter(|path| std::fs::read_to_string(path).is_ok_and(|text| text.contains(".shared()")))
        .map(|path| path.strip_prefix(&src).expect("under src").display().to_string())
        .collect();
    assert_eq!(askers, ["engine.rs"], "files that match on the storage model");
}

#[test]
fn a_circle_is_found_when_there_is_one() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(circle("a", &graph), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    graph.get_mut("c").unwrap().clear();
    assert_eq!(circle("a", &graph), None);
}
