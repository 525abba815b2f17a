//! The template, the binaries, the code's route table, openapi.yaml and events/ agree.

use std::collections::BTreeSet;
use std::path::PathBuf;

use forum_api::Route;
use forum_api::handlers::route_table::api_routes;
use forum_local::template::{BUNDLED_TEMPLATE, StackTemplate};
use forum_local::translation::{BUNDLED_TRANSLATION, Translation};

use crate::support::openapi;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn every_template_function_has_a_binary_and_every_binary_a_function() {
    let template = StackTemplate::parse(BUNDLED_TEMPLATE).unwrap();
    let in_template: BTreeSet<String> = template.functions.iter().map(|f| f.binary.clone()).collect();
    let binaries: BTreeSet<String> = std::fs::read_dir(root().join("functions/src/bin"))
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(in_template, binaries);
    for binary in &binaries {
        assert!(
            forum_api::routes::TRIGGER_BINARIES.contains(&binary.as_str()) || Route::from_binary(binary).is_some(),
            "{binary} is neither a route nor a trigger"
        );
    }
}

#[test]
fn template_routes_are_the_code_routes_with_and_without_slash() {
    // As API Gateway gets them: from SAM's translation of template.yaml.
    let translation = Translation::parse(BUNDLED_TRANSLATION, BUNDLED_TEMPLATE).unwrap();
    let from_template: BTreeSet<(String, String, String)> = translation
        .routes
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.binary.clone()))
        .collect();
    let mut from_code = BTreeSet::new();
    for spec in api_routes() {
        from_code.insert((spec.method.to_string(), spec.path.to_string(), spec.binary.to_string()));
        from_code.insert((
            spec.method.to_string(),
            format!("{}/", spec.path),
            spec.binary.to_string(),
        ));
    }
    from_code.insert(("ANY".into(), "$default".into(), Route::Fallback.binary().to_string()));
    // Preflights must never reach the authorizer (a browser sends them without a token).
    from_code.insert((
        "OPTIONS".into(),
        "/{proxy+}".into(),
        Route::Fallback.binary().to_string(),
    ));
    assert_eq!(from_template, from_code);
    for route in &translation.routes {
        assert_eq!(
            route.authorizer.is_some(),
            route.method != "OPTIONS",
            "every route but OPTIONS needs a JWT: {}",
            route.route_key()
        );
    }
}

#[test]
fn openapi_documents_exactly_the_code_routes() {
    let paths = openapi().doc()["paths"].as_object().unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                documented.insert((method.to_ascii_uppercase(), path.trim_end_matches('/').to_string()));
            }
        }
    }
    let code: BTreeSet<(String, String)> = api_routes()
        .map(|spec| (spec.method.to_string(), spec.path.to_string()))
        .collect();
    assert_eq!(documented, code);
}

#[test]
fn every_route_has_a_sample_event() {
    for route in Route::all() {
        let file = root().join("events").join(format!("{}.json", route.binary()));
        assert!(file.exists(), "missing {}", file.display());
    }
    assert!(root().join("events/authorizer.json").exists());
}

/// A route's binary, its `[[bin]]` entry and its sample event are mechanical, so they are
/// generated from the route table: one missing (or a binary that is not the one line) fails
/// here, and `FORUM_WRITE_GENERATED=1 cargo test --workspace every_routes_wiring` writes it.
/// (A sample event is written once, from its method and path; edit it freely after.)
#[test]
fn every_routes_wiring_is_generated_from_the_route_table() {
    let write = std::env::var("FORUM_WRITE_GENERATED").as_deref() == Ok("1");
    let mut missing = Vec::new();
    let cargo_path = root().join("functions/Cargo.toml");
    let mut cargo = std::fs::read_to_string(&cargo_path).unwrap();
    for route in Route::all() {
        let spec = route.spec();
        let binary = spec.binary;
        let main = format!(
            "//! Lambda for the `{binary}` route: wiring only, the handler lives in `forum-api`.\n\
             #[tokio::main]\n\
             async fn main() -> Result<(), forum_api::lambda::Error> {{\n    \
             forum_api::lambda::serve_http(forum_api::Route::{route:?}).await\n}}\n"
        );
        let bin_path = root().join(format!("functions/src/bin/{binary}.rs"));
        if std::fs::read_to_string(&bin_path).ok().as_deref() != Some(main.as_str()) {
            if write {
                std::fs::write(&bin_path, &main).unwrap();
            } else {
                missing.push(format!("{} (its one-line main)", bin_path.display()));
            }
        }
        let entry = format!("[[bin]]\nname = \"{binary}\"\npath = \"src/bin/{binary}.rs\"\ntest = false\n");
        if !cargo.contains(&entry) {
            if write {
                cargo.push_str(&format!("\n{entry}"));
            } else {
                missing.push(format!("functions/Cargo.toml: {entry}"));
            }
        }
        let event_path = root().join(format!("events/{binary}.json"));
        if !event_path.exists() && route != Route::Fallback {
            if write {
                std::fs::write(&event_path, sample_event(spec.method, spec.path)).unwrap();
            } else {
                missing.push(format!("{}", event_path.display()));
            }
        }
    }
    if write {
        std::fs::write(&cargo_path, cargo).unwrap();
    }
    assert!(
        missing.is_empty(),
        "generated wiring missing (FORUM_WRITE_GENERATED=1 writes it): {missing:#?}"
    );
}

/// An API Gateway (payload 2.0) event for `method path`, from events/get-post.json: the same
/// caller and context, this route's key, path and parameters, and a JSON body for writes.
fn sample_event(method: &str, path: &str) -> String {
    let mut event: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("events/get-post.json")).unwrap()).unwrap();
    let sample_id = "01JDQ8Z6Y0X9W8V7T6S5R4Q3P2";
    let mut parameters = serde_json::Map::new();
    let raw_path = path
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    parameters.insert(name.to_string(), serde_json::json!(sample_id));
                    sample_id.to_string()
                }
                None => segment.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/");
    let route_key = format!("{method} {path}");
    event["routeKey"] = serde_json::json!(route_key);
    event["rawPath"] = serde_json::json!(raw_path);
    event["requestContext"]["routeKey"] = serde_json::json!(route_key);
    event["requestContext"]["http"]["method"] = serde_json::json!(method);
    event["requestContext"]["http"]["path"] = serde_json::json!(raw_path);
    event["pathParameters"] = serde_json::Value::Object(parameters);
    if method != "GET" && method != "DELETE" {
        event["headers"]["content-type"] = serde_json::json!("application/json");
        event["body"] = serde_json::json!("{}");
        event["isBase64Encoded"] = serde_json::json!(false);
    }
    format!("{}\n", serde_json::to_string_pretty(&event).unwrap())
}

/// README's list of error codes is openapi.yaml's: every code of its table is there.
#[test]
fn readme_lists_every_error_code_openapi_documents() {
    let codes_in = |text: &str| -> BTreeSet<String> {
        text.split('`')
            .skip(1)
            .step_by(2)
            .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
            .map(str::to_string)
            .collect()
    };
    let openapi = std::fs::read_to_string(root().join("openapi.yaml")).unwrap();
    let table: String = openapi
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with("| 4") || l.starts_with("| 5")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let documented = codes_in(&table);
    assert!(documented.len() > 15, "{documented:?}");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let listed = readme
        .split_once("<!-- error codes")
        .and_then(|(_, rest)| rest.split_once("\n\n"))
        .map(|(list, _)| codes_in(list))
        .expect("README's error codes");
    let missing: Vec<_> = documented.difference(&listed).collect();
    assert!(missing.is_empty(), "README does not list {missing:?}");
}
