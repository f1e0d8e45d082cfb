//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{builds, camb, certificates, events, programs, runs, services, system};
use crate::config::RunConfig;
use launcher_sandbox::Limits as SandboxLimits;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Attestable launcher",
        description = "Upload, compile and run C integration processes in compartments. \
                       Every /v1 route except GET /v1/ca needs `Authorization: Bearer <token>` \
                       (the token is in <data>/api-token). Errors are \
                       `{\"error\": {\"code\", \"message\"}}`.",
    ),
    paths(
        system::healthz,
        system::ca,
        system::openapi,
        system::platform,
        system::audit,
        programs::upload,
        programs::list,
        programs::show,
        programs::source,
        programs::delete,
        builds::create,
        builds::list,
        builds::show,
        runs::create,
        runs::list,
        runs::show,
        runs::cancel,
        events::follow,
        certificates::certificate,
        certificates::calls,
        services::list,
        services::show,
        services::put,
        services::delete,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "programs", description = "Uploaded sources"),
        (name = "builds", description = "Compilations"),
        (name = "runs", description = "Supervised executions, their certificates and brokered calls"),
        (name = "services", description = "The services the broker may call"),
        (name = "system", description = "Health, CA, platform, audit log"),
    )
)]
struct ApiDoc;

#[derive(OpenApi)]
#[openapi(
    paths(
        camb::upload,
        camb::files,
        camb::delete_file,
        camb::compile,
        camb::execute,
    ),
    tags((name = "camb-compat", description = "The CAMB launcher's routes (--camb-compat, loopback only, no token)"))
)]
struct CambDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The token in <data>/api-token"))
                    .build(),
            ),
        );
    }
}

/// The document for this daemon: the CAMB routes appear only when served,
/// and the configured run limits are stated in the request schema.
pub fn document(camb_compat: bool, runs: &RunConfig) -> serde_json::Value {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    if camb_compat {
        doc.merge(CambDoc::openapi());
    }
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    let request = &mut doc["components"]["schemas"]["RunRequest"]["properties"];
    if request.is_object() {
        request["time_limit_s"]["maximum"] = runs.max_time_limit_s.into();
        request["args"]["maxItems"] = runs.max_args.into();
        request["args"]["items"]["maxLength"] = runs.max_arg_chars.into();
        request["args"]["items"]["pattern"] = "^[^\\u0000]*$".into();
    }
    // Each limit between the sandbox's bounds and the configured one (which a
    // run may only lower; CPU: the longest time limit + 1 s).
    let limits = &mut doc["components"]["schemas"]["RunLimitsRequest"]["properties"];
    if limits.is_object() {
        let (min, max) = (SandboxLimits::MIN, SandboxLimits::MAX);
        let configured = |v: u64, ceiling: u64| if v == 0 { ceiling } else { v.min(ceiling) };
        let c = &runs.limits;
        for (field, low, high) in [
            (
                "address_space_bytes",
                min.address_space_bytes,
                configured(c.address_space_bytes, max.address_space_bytes),
            ),
            (
                "cpu_seconds",
                min.cpu_seconds,
                (u64::from(runs.max_time_limit_s) + 1).min(max.cpu_seconds),
            ),
            (
                "open_files",
                min.open_files,
                configured(c.open_files, max.open_files),
            ),
            (
                "processes",
                min.processes,
                configured(c.processes, max.processes),
            ),
            (
                "file_size_bytes",
                min.file_size_bytes.max(1),
                configured(c.file_size_bytes, max.file_size_bytes),
            ),
        ] {
            limits[field]["minimum"] = low.into();
            limits[field]["maximum"] = high.into();
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_auth_and_errors() {
        let doc = document(true, &RunConfig::default());
        let paths = doc["paths"].as_object().unwrap();
        for (path, methods) in [
            ("/healthz", &["get"][..]),
            ("/v1/ca", &["get"]),
            ("/v1/openapi.json", &["get"]),
            ("/v1/platform", &["get"]),
            ("/v1/audit", &["get"]),
            ("/v1/programs", &["get", "post"]),
            ("/v1/programs/{id}", &["get", "delete"]),
            ("/v1/programs/{id}/source", &["get"]),
            ("/v1/programs/{id}/builds", &["get", "post"]),
            ("/v1/builds/{id}", &["get"]),
            ("/v1/programs/{id}/runs", &["post"]),
            ("/v1/runs", &["get"]),
            ("/v1/runs/{id}", &["get"]),
            ("/v1/runs/{id}/cancel", &["post"]),
            ("/v1/runs/{id}/events", &["get"]),
            ("/v1/runs/{id}/certificate", &["get"]),
            ("/v1/runs/{id}/calls", &["get"]),
            ("/v1/services", &["get"]),
            ("/v1/services/{id}", &["get", "put", "delete"]),
            ("/upload", &["post"]),
            ("/files", &["get"]),
            ("/files/{id}", &["delete"]),
            ("/compile/{id}", &["post"]),
            ("/execute/{id}", &["post"]),
        ] {
            for method in methods {
                let op = &paths[path][method];
                assert!(op.is_object(), "{method} {path} is not documented");
                let needs_token = path.starts_with("/v1/") && path != "/v1/ca";
                if needs_token {
                    assert_eq!(op["security"][0]["bearer"], serde_json::json!([]), "{path}");
                    assert!(
                        op["responses"]["401"].is_object(),
                        "{method} {path} lacks 401"
                    );
                }
            }
        }
        // Every response has a description and every operation a unique id.
        let mut ids = std::collections::BTreeSet::new();
        for (path, methods) in paths {
            for (method, op) in methods.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
                for (status, response) in op["responses"].as_object().unwrap() {
                    let text = response["description"].as_str().unwrap_or("");
                    assert!(
                        !text.is_empty(),
                        "{method} {path} {status} has no description"
                    );
                }
            }
        }
        // Bodies that may be empty are optional.
        for path in ["/v1/programs/{id}/builds", "/v1/programs/{id}/runs"] {
            let body = &paths[path]["post"]["requestBody"];
            assert!(body.is_object(), "{path}");
            assert_ne!(body["required"], serde_json::json!(true), "{path}");
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let limits = &doc["components"]["schemas"]["RunRequest"]["properties"];
        assert_eq!(limits["time_limit_s"]["maximum"], 3600);
        assert_eq!(limits["args"]["maxItems"], 32);
        assert_eq!(limits["args"]["items"]["maxLength"], 1024);
        let without = document(false, &RunConfig::default());
        assert!(without["paths"]["/upload"].is_null());
    }

    #[test]
    fn run_limits_state_what_the_launcher_accepts() {
        // schemathesis found values the schema allowed and the launcher refused.
        let mut runs = RunConfig::default();
        runs.limits.open_files = 100;
        runs.limits.address_space_bytes = 0; // unlimited: the sandbox's maximum
        let doc = document(false, &runs);
        let limits = &doc["components"]["schemas"]["RunLimitsRequest"]["properties"];
        assert_eq!(limits["address_space_bytes"]["minimum"], 16 << 20);
        assert_eq!(limits["address_space_bytes"]["maximum"], 1u64 << 40);
        assert_eq!(limits["open_files"]["minimum"], 4);
        assert_eq!(limits["open_files"]["maximum"], 100);
        assert_eq!(limits["cpu_seconds"]["maximum"], 3601);
        assert_eq!(limits["file_size_bytes"]["minimum"], 1);
        let id = &doc["paths"]["/v1/services/{id}"]["get"]["parameters"][0]["schema"];
        assert_eq!(id["pattern"], "^[a-z0-9-]{1,64}$");
    }
}
