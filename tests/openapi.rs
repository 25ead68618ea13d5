//! `/openapi.json` is generated from the handlers and covers every route: each documented
//! operation is served (never the router's 404 or 405), and every route family is documented.

mod support;

use support::{Client, Server};

#[tokio::test]
async fn every_documented_operation_is_served_and_every_route_is_documented() {
    let server = Server::start().unwrap();
    let anonymous = Client::anonymous(&server);
    let document = anonymous.get("/openapi.json").await;
    assert_eq!(document.status, 200);
    let paths = document.body["paths"].as_object().expect("paths");
    let uuid = "0190a6e2-0000-7000-8000-000000000000";
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .split('/')
            .map(|segment| if segment.starts_with('{') { uuid } else { segment })
            .collect::<Vec<_>>()
            .join("/");
        for method in ["get", "post", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let reply = anonymous.send(&method.to_uppercase(), &concrete, None).await;
            assert!(
                reply.status != 404 && reply.status != 405,
                "{method} {path} is documented but not served: {reply:?}"
            );
            let secured = item[method].get("security").is_none_or(|s| s != &serde_json::json!([{}]));
            if secured && !path.starts_with("/openapi") {
                assert_eq!(reply.status, 401, "{method} {path} must require a bearer token");
            }
        }
    }
    for family in ["/v1/orgs", "/v1/projects/{orgId}", "/v1/machine-tokens/{orgId}", "/healthz", "/readyz", "/metrics"]
    {
        assert!(paths.contains_key(family), "{family} is not documented");
    }
    assert!(operations >= 25, "only {operations} operations documented");
    assert!(document.body["components"]["schemas"]["ProblemDocument"].is_object());
    let unknown = anonymous.get("/v1/nothing-here").await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
    assert!(server.stop().unwrap().success());
}

/// The document says exactly what the server takes: every id in a path is a UUID (the server
/// answers 400 `invalid_id` to anything else), `/openapi.json` itself is public, and every
/// `limit` states its bounds.
#[tokio::test]
async fn path_ids_are_uuids_the_document_is_public_and_limits_are_bounded() {
    let server = Server::start().unwrap();
    let document = Client::anonymous(&server).get("/openapi.json").await.body;
    let paths = document["paths"].as_object().expect("paths");
    let mut path_parameters = 0;
    let mut limits = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("a path item") {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let schema = &parameter["schema"];
                // A project of the secrets routes is named by its id or its name, an environment
                // by its name.
                if parameter["in"] == "path"
                    && ["project", "environment"].contains(&parameter["name"].as_str().unwrap_or_default())
                {
                    assert_eq!(schema["type"].as_str(), Some("string"), "{method} {path}: {parameter}");
                } else if parameter["in"] == "path" {
                    path_parameters += 1;
                    assert_eq!(
                        (schema["type"].as_str(), schema["format"].as_str()),
                        (Some("string"), Some("uuid")),
                        "{method} {path}: {parameter}"
                    );
                }
                if parameter["name"] == "limit" {
                    limits += 1;
                    assert_eq!((schema["minimum"].as_u64(), schema["maximum"].is_number()), (Some(1), true), "{path}");
                }
            }
        }
    }
    assert!(path_parameters >= 40, "only {path_parameters} path parameters");
    assert!(limits >= 4, "only {limits} limits");
    assert_eq!(document["paths"]["/openapi.json"]["get"]["security"], serde_json::json!([{}]));
    assert!(server.stop().unwrap().success());
}
