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
