//! `template.yaml` must agree with the code: one function and one `POST` route per
//! [`Family`], the right binary for each, an event-URL output for each of the ten
//! [`EventKind`]s, the table exactly as [`b24_state::schema::table_spec`] says, an environment
//! the functions' [`b24_pipeline::Config`] accepts, least-privilege DynamoDB permissions, and
//! alarms/dashboard that use the metric names the code emits.
//!
//! The template is parsed with `serde_yaml_ng`, which keeps CloudFormation short-form tags
//! (`!Ref`, `!Sub`, `!GetAtt`, `!If`, ...) as tagged values; long forms (`Ref:`, `Fn::Sub:`)
//! are understood too.

use b24_events::{EventKind, Family};
use b24_pipeline::metrics::names;
use b24_state::schema::{self, table_spec};
use serde_yaml_ng::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

// ------------------------------------------------------------------------------------------
// Loading and small helpers

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn template() -> &'static Value {
    static T: OnceLock<Value> = OnceLock::new();
    T.get_or_init(|| {
        // B24_TEMPLATE points the test at another file (used to check that it catches mistakes).
        let path = std::env::var_os("B24_TEMPLATE")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("template.yaml"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("parse template.yaml: {e}"))
    })
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping()?.get(key)
}

/// `v[k1][k2]...`, panicking with the path when something is missing.
fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    let mut cur = v;
    for (i, k) in path.iter().enumerate() {
        cur = get(cur, k).unwrap_or_else(|| panic!("template: missing {}", path[..=i].join(".")));
    }
    cur
}

fn s(v: &Value) -> Option<&str> {
    v.as_str()
}

/// An intrinsic function as (`Ref` | `Fn::Sub` | `Fn::GetAtt` | ..., argument), from either the
/// short tag form (`!Sub x`) or the long form (`Fn::Sub: x`).
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let full = if name == "Ref" || name == "Condition" {
                name.to_string()
            } else {
                format!("Fn::{name}")
            };
            Some((full, &t.value))
        }
        Value::Mapping(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next()?;
            let k = k.as_str()?;
            (k == "Ref" || k == "Condition" || k.starts_with("Fn::")).then(|| (k.to_string(), arg))
        }
        _ => None,
    }
}

fn ref_target(v: &Value) -> Option<&str> {
    match intrinsic(v)? {
        (f, arg) if f == "Ref" => arg.as_str(),
        _ => None,
    }
}

/// `!GetAtt X.Y` or `!GetAtt [X, Y]` → (X, Y).
fn getatt(v: &Value) -> Option<(String, String)> {
    let (f, arg) = intrinsic(v)?;
    if f != "Fn::GetAtt" {
        return None;
    }
    match arg {
        Value::String(x) => {
            let (a, b) = x.split_once('.')?;
            Some((a.to_string(), b.to_string()))
        }
        Value::Sequence(xs) if xs.len() == 2 => {
            Some((xs[0].as_str()?.to_string(), xs[1].as_str()?.to_string()))
        }
        _ => None,
    }
}

/// The string of `!Sub "..."` (single-argument form).
fn sub_string(v: &Value) -> Option<&str> {
    match intrinsic(v)? {
        (f, arg) if f == "Fn::Sub" => arg.as_str(),
        _ => None,
    }
}

fn resources() -> &'static Mapping {
    at(template(), &["Resources"])
        .as_mapping()
        .expect("Resources is a mapping")
}

fn resource(id: &str) -> &'static Value {
    resources()
        .get(id)
        .unwrap_or_else(|| panic!("template: no resource {id}"))
}

fn resources_of_type(ty: &str) -> Vec<(&'static str, &'static Value)> {
    resources()
        .iter()
        .filter(|(_, r)| get(r, "Type").and_then(s) == Some(ty))
        .map(|(k, r)| (k.as_str().expect("logical id is a string"), r))
        .collect()
}

/// Deep-merges `over` onto `base` the way SAM merges Globals (maps merge, the rest is replaced).
fn merge(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) if intrinsic(over).is_none() => {
            let mut out = b.clone();
            for (k, v) in o {
                let merged = match b.get(k) {
                    Some(bv) => merge(bv, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Mapping(out)
        }
        _ => over.clone(),
    }
}

/// The function's properties with `Globals.Function` applied.
fn effective_properties(function: &Value) -> Value {
    let globals = get(template(), "Globals")
        .and_then(|g| get(g, "Function"))
        .cloned()
        .unwrap_or(Value::Mapping(Mapping::new()));
    merge(&globals, at(function, &["Properties"]))
}

/// Every `AWS::Serverless::Function` by its build binary.
fn functions() -> BTreeMap<String, (&'static str, &'static Value)> {
    let mut out = BTreeMap::new();
    for (id, f) in resources_of_type("AWS::Serverless::Function") {
        let binary = get(f, "Metadata")
            .and_then(|m| get(m, "BuildProperties"))
            .and_then(|b| get(b, "Binary"))
            .and_then(s)
            .unwrap_or_else(|| panic!("{id}: Metadata.BuildProperties.Binary is missing"));
        assert!(
            out.insert(binary.to_string(), (id, f)).is_none(),
            "two functions build {binary}"
        );
    }
    out
}

/// The package name of every crate under `functions/` (one function each).
fn function_crates() -> BTreeSet<String> {
    let dir = repo_root().join("functions");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path().join("Cargo.toml"))
        .filter(|m| m.is_file())
        .map(|manifest| {
            let text = std::fs::read_to_string(&manifest)
                .unwrap_or_else(|e| panic!("read {}: {e}", manifest.display()));
            text.lines()
                .map(str::trim)
                .find_map(|l| {
                    l.strip_prefix("name")
                        .map(str::trim)
                        .and_then(|l| l.strip_prefix('='))
                })
                .map(|v| v.trim().trim_matches('"').to_string())
                .unwrap_or_else(|| panic!("{}: no package name", manifest.display()))
        })
        .collect()
}

/// The single `AWS::Serverless::Function` of each family, found by its build binary.
fn functions_by_family() -> BTreeMap<Family, (&'static str, &'static Value)> {
    functions()
        .into_iter()
        .filter_map(|(binary, f)| {
            Family::ALL
                .iter()
                .copied()
                .find(|fam| binary == binary_name(*fam))
                .map(|fam| (fam, f))
        })
        .collect()
}

fn binary_name(f: Family) -> String {
    format!("b24-fn-{}", f.as_str())
}

fn table_id() -> &'static str {
    let tables = resources_of_type("AWS::DynamoDB::Table");
    assert_eq!(tables.len(), 1, "exactly one DynamoDB table expected");
    tables[0].0
}

fn parameter_default(name: &str) -> Option<String> {
    let p = get(at(template(), &["Parameters"]), name)?;
    scalar_string(get(p, "Default")?)
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(x) => Some(x.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Resolves an environment value with the parameters' defaults (and `overrides`), as a
/// deployment with default parameters would. `None` = the variable is removed (`AWS::NoValue`).
fn resolve(v: &Value, overrides: &BTreeMap<&str, String>) -> Option<String> {
    if let Some(x) = scalar_string(v) {
        return Some(x);
    }
    let (f, arg) = intrinsic(v).unwrap_or_else(|| panic!("cannot resolve {v:?}"));
    match f.as_str() {
        "Ref" => {
            let name = arg.as_str().expect("Ref takes a name");
            if name == "AWS::NoValue" {
                return None;
            }
            if let Some(o) = overrides.get(name) {
                return Some(o.clone());
            }
            if resources().contains_key(name) {
                return Some(format!("{name}-physical-id"));
            }
            Some(parameter_default(name).unwrap_or_else(|| panic!("no parameter {name}")))
        }
        "Fn::FindInMap" => {
            let a = arg.as_sequence().expect("FindInMap takes a list");
            let map = a[0].as_str().expect("map name");
            let k1 = resolve(&a[1], overrides).expect("first key");
            let k2 = resolve(&a[2], overrides).expect("second key");
            scalar_string(at(template(), &["Mappings", map, &k1, &k2]))
        }
        "Fn::If" => {
            let a = arg.as_sequence().expect("If takes a list");
            let cond = a[0].as_str().expect("condition name");
            if condition(cond, overrides) {
                resolve(&a[1], overrides)
            } else {
                resolve(&a[2], overrides)
            }
        }
        "Fn::GetAtt" => {
            let (r, attr) = getatt(v).expect("GetAtt target");
            assert!(
                resources().contains_key(r.as_str()),
                "GetAtt of unknown {r}"
            );
            Some(format!("{r}-{attr}"))
        }
        "Fn::Sub" => sub_string(v).map(str::to_string),
        other => panic!("cannot resolve {other} in an environment variable"),
    }
}

/// Evaluates the `!Not [!Equals [!Ref P, ""]]` conditions the template uses.
fn condition(name: &str, overrides: &BTreeMap<&str, String>) -> bool {
    fn eval(v: &Value, overrides: &BTreeMap<&str, String>) -> bool {
        let (f, arg) = intrinsic(v).expect("condition is an intrinsic");
        let a = arg.as_sequence();
        match f.as_str() {
            "Fn::Not" => !eval(&a.expect("list")[0], overrides),
            "Fn::And" => a.expect("list").iter().all(|c| eval(c, overrides)),
            "Fn::Equals" => {
                let a = a.expect("list");
                resolve(&a[0], overrides) == resolve(&a[1], overrides)
            }
            "Condition" => condition(arg.as_str().expect("name"), overrides),
            other => panic!("condition function {other} not supported by this test"),
        }
    }
    eval(at(template(), &["Conditions", name]), overrides)
}

/// The environment of a function, resolved with default parameters (plus overrides).
fn environment(function: &Value, overrides: &BTreeMap<&str, String>) -> BTreeMap<String, String> {
    let props = effective_properties(function);
    let vars = get(&props, "Environment")
        .and_then(|e| get(e, "Variables"))
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    vars.iter()
        .filter_map(|(k, v)| {
            let k = k.as_str().expect("variable name").to_string();
            resolve(v, overrides).map(|v| (k, v))
        })
        .collect()
}

fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Sequence(xs) => xs.iter().collect(),
        other => vec![other],
    }
}

// ------------------------------------------------------------------------------------------
// Functions, binaries, routes

#[test]
fn every_function_crate_is_deployed_and_nothing_else() {
    let deployed: BTreeSet<String> = functions().keys().cloned().collect();
    assert_eq!(
        deployed,
        function_crates(),
        "template functions (Metadata.BuildProperties.Binary) vs crates under functions/"
    );
    for (binary, (id, f)) in functions() {
        let p = effective_properties(f);
        assert_eq!(
            get(f, "Metadata")
                .and_then(|m| get(m, "BuildMethod"))
                .and_then(s),
            Some("rust-cargolambda"),
            "{id}: Metadata.BuildMethod"
        );
        let arch: Vec<_> = get(&p, "Architectures")
            .and_then(Value::as_sequence)
            .map(|a| a.iter().filter_map(s).collect())
            .unwrap_or_default();
        assert_eq!(arch, ["arm64"], "{id} ({binary}): Architectures");
        assert_eq!(
            get(&p, "Runtime").and_then(s),
            Some("provided.al2023"),
            "{id}"
        );
    }
}

#[test]
fn one_function_per_family_with_the_right_binary() {
    let by_family = functions_by_family();
    assert_eq!(
        by_family.keys().copied().collect::<Vec<_>>(),
        Family::ALL.to_vec(),
        "one AWS::Serverless::Function per Family"
    );
    assert!(
        resources_of_type("AWS::Lambda::Function").is_empty(),
        "functions must be AWS::Serverless::Function"
    );

    for (family, (id, f)) in &by_family {
        // The binary is the package of functions/<family> (binary name = package name).
        let manifest = repo_root()
            .join("functions")
            .join(family.as_str())
            .join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .unwrap_or_else(|e| panic!("{id}: read {}: {e}", manifest.display()));
        let package_name = text
            .lines()
            .map(str::trim)
            .find_map(|l| {
                l.strip_prefix("name")
                    .map(str::trim)
                    .and_then(|l| l.strip_prefix('='))
            })
            .map(|v| v.trim().trim_matches('"').to_string());
        assert_eq!(
            package_name.as_deref(),
            Some(binary_name(*family).as_str()),
            "{id}: package name in {}",
            manifest.display()
        );

        assert_eq!(
            get(f, "Metadata")
                .and_then(|m| get(m, "BuildMethod"))
                .and_then(s),
            Some("rust-cargolambda"),
            "{id}: Metadata.BuildMethod"
        );
        let p = effective_properties(f);
        assert_eq!(
            get(&p, "Runtime").and_then(s),
            Some("provided.al2023"),
            "{id}: Runtime"
        );
        assert_eq!(
            get(&p, "Handler").and_then(s),
            Some("bootstrap"),
            "{id}: Handler"
        );
        assert_eq!(
            get(&p, "CodeUri").and_then(s),
            Some("."),
            "{id}: CodeUri (workspace root)"
        );
        let arch: Vec<_> = get(&p, "Architectures")
            .and_then(Value::as_sequence)
            .map(|a| a.iter().filter_map(s).collect())
            .unwrap_or_default();
        assert_eq!(arch, ["arm64"], "{id}: Architectures");
        assert_eq!(
            get(&p, "Tracing").and_then(s),
            Some("Active"),
            "{id}: Tracing"
        );
    }
}

#[test]
fn one_post_route_per_family() {
    let apis = resources_of_type("AWS::Serverless::HttpApi");
    assert_eq!(apis.len(), 1, "exactly one AWS::Serverless::HttpApi");
    let api_id = apis[0].0;

    let mut all_routes = BTreeSet::new();
    for (family, (id, f)) in functions_by_family() {
        let events = get(&effective_properties(f), "Events")
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            events.len(),
            1,
            "{id}: exactly one event source (its route)"
        );
        let (_, ev) = events.iter().next().expect("one event");
        assert_eq!(
            get(ev, "Type").and_then(s),
            Some("HttpApi"),
            "{id}: event type"
        );
        let props = at(ev, &["Properties"]);
        assert_eq!(
            get(props, "Path").and_then(s),
            Some(family.route()),
            "{id}: route of family {family}"
        );
        assert_eq!(
            get(props, "Method")
                .and_then(s)
                .map(str::to_ascii_uppercase)
                .as_deref(),
            Some("POST"),
            "{id}: method"
        );
        assert_eq!(
            get(props, "ApiId").and_then(ref_target),
            Some(api_id),
            "{id}: ApiId must be !Ref {api_id}"
        );
        if let Some(v) = get(props, "PayloadFormatVersion") {
            assert_eq!(
                scalar_string(v).as_deref(),
                Some("2.0"),
                "{id}: payload format"
            );
        }
        all_routes.insert(family.route());
    }
    assert_eq!(all_routes.len(), Family::ALL.len(), "routes are distinct");
}

// ------------------------------------------------------------------------------------------
// Outputs

fn output_url_suffix(name: &str) -> String {
    let out = get(at(template(), &["Outputs"]), name)
        .unwrap_or_else(|| panic!("template: no output {name}"));
    let sub = sub_string(at(out, &["Value"]))
        .unwrap_or_else(|| panic!("output {name}: Value must be !Sub \"https://${{HttpApi}}...\""));
    let (api, _) = resources_of_type("AWS::Serverless::HttpApi")[0];
    let base = format!("https://${{{api}}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}");
    sub.strip_prefix(&base)
        .unwrap_or_else(|| panic!("output {name}: {sub} does not start with {base}"))
        .to_string()
}

fn capitalized(x: &str) -> String {
    let mut c = x.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

#[test]
fn outputs_name_the_url_of_every_route_and_event() {
    assert_eq!(output_url_suffix("ApiBaseUrl"), "");
    for family in Family::ALL.iter().copied() {
        let name = format!("{}Url", capitalized(family.as_str()));
        assert_eq!(output_url_suffix(&name), family.route(), "output {name}");
    }
    let outputs = at(template(), &["Outputs"])
        .as_mapping()
        .expect("Outputs mapping");
    for kind in EventKind::ALL.iter().copied() {
        let name = format!("{}Url", kind.bind_name());
        assert_eq!(
            output_url_suffix(&name),
            kind.family().route(),
            "output {name}: {} is served by {}",
            kind.code(),
            kind.family()
        );
        let description = get(&outputs[name.as_str()], "Description")
            .and_then(s)
            .unwrap_or("");
        assert!(
            description.contains(kind.code()),
            "output {name}: description names {}",
            kind.code()
        );
    }
    // No output for an event the code does not know (e.g. left over after a rename).
    let known: BTreeSet<String> = EventKind::ALL
        .iter()
        .map(|k| format!("{}Url", k.bind_name()))
        .collect();
    for (k, _) in outputs {
        let k = k.as_str().expect("output name");
        if k.starts_with("On") && k.ends_with("Url") {
            assert!(
                known.contains(k),
                "output {k} is not the URL of any EventKind"
            );
        }
    }
    let table = table_id();
    assert_eq!(
        get(at(template(), &["Outputs", "TableName"]), "Value").and_then(ref_target),
        Some(table),
        "output TableName"
    );
}

// ------------------------------------------------------------------------------------------
// Table

#[test]
fn table_matches_the_schema_in_code() {
    let spec = table_spec();
    let id = table_id();
    let t = resource(id);
    assert_eq!(
        get(t, "DeletionPolicy").and_then(s),
        Some("Retain"),
        "{id}: DeletionPolicy"
    );
    assert_eq!(
        get(t, "UpdateReplacePolicy").and_then(s),
        Some("Retain"),
        "{id}: UpdateReplacePolicy"
    );
    let p = at(t, &["Properties"]);

    let keys: Vec<(String, String)> = at(p, &["KeySchema"])
        .as_sequence()
        .expect("KeySchema list")
        .iter()
        .map(|k| {
            (
                at(k, &["AttributeName"])
                    .as_str()
                    .expect("name")
                    .to_string(),
                at(k, &["KeyType"]).as_str().expect("type").to_string(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            (spec.partition_key.name.to_string(), "HASH".to_string()),
            (spec.sort_key.name.to_string(), "RANGE".to_string()),
        ],
        "{id}: KeySchema"
    );
    assert_eq!(spec.partition_key.name, schema::PARTITION_KEY);
    assert_eq!(spec.sort_key.name, schema::SORT_KEY);

    let defs: BTreeSet<(String, String)> = at(p, &["AttributeDefinitions"])
        .as_sequence()
        .expect("AttributeDefinitions list")
        .iter()
        .map(|d| {
            (
                at(d, &["AttributeName"])
                    .as_str()
                    .expect("name")
                    .to_string(),
                at(d, &["AttributeType"])
                    .as_str()
                    .expect("type")
                    .to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = spec
        .attribute_definitions
        .iter()
        .map(|a| (a.name.to_string(), a.attribute_type.to_string()))
        .collect();
    assert_eq!(defs, want, "{id}: AttributeDefinitions");

    assert_eq!(
        get(p, "BillingMode").and_then(s),
        Some(spec.billing_mode),
        "{id}: BillingMode"
    );
    assert_eq!(
        at(p, &["TimeToLiveSpecification", "AttributeName"]).as_str(),
        Some(spec.ttl_attribute),
        "{id}: TTL attribute"
    );
    assert_eq!(spec.ttl_attribute, schema::TTL_ATTRIBUTE);
    assert_eq!(
        at(p, &["TimeToLiveSpecification", "Enabled"]).as_bool(),
        Some(true),
        "{id}: TTL enabled"
    );
    assert_eq!(
        at(p, &["StreamSpecification", "StreamViewType"]).as_str(),
        Some(spec.stream_view_type),
        "{id}: stream view type"
    );
    let pitr = get(p, "PointInTimeRecoverySpecification")
        .and_then(|x| get(x, "PointInTimeRecoveryEnabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    assert_eq!(
        pitr, spec.point_in_time_recovery,
        "{id}: point-in-time recovery"
    );
    let sse = get(p, "SSESpecification")
        .and_then(|x| get(x, "SSEEnabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    assert_eq!(sse, spec.sse_enabled, "{id}: SSE");

    assert!(
        get(p, "GlobalSecondaryIndexes").is_none(),
        "{id}: no GSI (the schema has none)"
    );
    assert!(get(p, "LocalSecondaryIndexes").is_none(), "{id}: no LSI");
}

// ------------------------------------------------------------------------------------------
// Environment

/// Every variable the code reads (b24_pipeline::Config); anything else is a typo.
const KNOWN_VARIABLES: &[&str] = &[
    schema::TABLE_NAME_ENV,
    "RUST_LOG",
    "METRICS_NAMESPACE",
    "MAX_BODY_BYTES",
    "PORTAL_CACHE_TTL_SECONDS",
    "EVENT_TTL_DAYS",
    "BITRIX24_CLIENT_ID",
    "VERIFIER_ALLOW_INSECURE",
    "VERIFIER_TIMEOUT_MS",
    "PARKED_QUEUE_URL",
    "BITRIX24_CLIENT_SECRET_PARAMETER",
    "TOKENS_KMS_KEY_ID",
];

#[test]
fn every_function_gets_an_environment_the_code_accepts() {
    let table = table_id();
    let none = BTreeMap::new();
    for (family, (id, f)) in functions_by_family() {
        // TABLE_NAME is the table's !Ref (not a literal that could drift).
        let props = effective_properties(f);
        let raw = at(&props, &["Environment", "Variables"]);
        assert_eq!(
            get(raw, schema::TABLE_NAME_ENV).and_then(ref_target),
            Some(table),
            "{id}: {} must be !Ref {table}",
            schema::TABLE_NAME_ENV
        );
        assert_eq!(
            get(raw, "PARKED_QUEUE_URL").and_then(ref_target),
            Some("ParkedQueue"),
            "{id}: PARKED_QUEUE_URL must be !Ref ParkedQueue"
        );
        for k in raw.as_mapping().expect("Variables mapping").keys() {
            let k = k.as_str().expect("name");
            assert!(
                KNOWN_VARIABLES.contains(&k),
                "{id}: unknown environment variable {k}"
            );
        }
        // VERIFIER_ALLOW_INSECURE is a literal "false" wherever it appears: never a parameter.
        if let Some(v) = get(raw, "VERIFIER_ALLOW_INSECURE") {
            assert_eq!(v.as_str(), Some("false"), "{id}: VERIFIER_ALLOW_INSECURE");
        }

        let env = environment(f, &none);
        let config = b24_pipeline::Config::from_lookup(family, |k| env.get(k).cloned())
            .unwrap_or_else(|e| panic!("{id}: the code rejects the template's environment: {e}"));
        assert!(
            !config.verifier.allow_insecure,
            "{id}: verifier must be secure in AWS"
        );
        assert_eq!(
            Some(config.metrics_namespace.clone()),
            parameter_default("MetricsNamespace"),
            "{id}: METRICS_NAMESPACE"
        );
        assert!(env.contains_key("RUST_LOG"), "{id}: RUST_LOG");
        if family != Family::App {
            assert!(
                !env.contains_key("BITRIX24_CLIENT_ID"),
                "{id}: BITRIX24_CLIENT_ID is app-only"
            );
        }

        // The extremes every numeric parameter allows are accepted by the code too.
        for (param, var) in [
            ("MaxBodyBytes", "MAX_BODY_BYTES"),
            ("EventTtlDays", "EVENT_TTL_DAYS"),
            ("PortalCacheTtlSeconds", "PORTAL_CACHE_TTL_SECONDS"),
        ] {
            let p = at(template(), &["Parameters", param]);
            for bound in ["MinValue", "MaxValue"] {
                let value = get(p, bound)
                    .and_then(scalar_string)
                    .unwrap_or_else(|| panic!("parameter {param} needs {bound}"));
                let overrides = BTreeMap::from([(param, value.clone())]);
                let env = environment(f, &overrides);
                assert_eq!(env.get(var), Some(&value), "{id}: {var} comes from {param}");
                b24_pipeline::Config::from_lookup(family, |k| env.get(k).cloned()).unwrap_or_else(
                    |e| panic!("{id}: {param}={value} ({bound}) is rejected by the code: {e}"),
                );
            }
        }
    }

    // The optional client id reaches the app function only when it is set.
    let (_, app) = functions_by_family()[&Family::App];
    assert!(!environment(app, &none).contains_key("BITRIX24_CLIENT_ID"));
    let set = BTreeMap::from([("Bitrix24ClientId", "app.0123.abcd".to_string())]);
    assert_eq!(
        environment(app, &set)
            .get("BITRIX24_CLIENT_ID")
            .map(String::as_str),
        Some("app.0123.abcd")
    );
}

// ------------------------------------------------------------------------------------------
// Permissions

const WEBHOOK_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:ConditionCheckItem",
];
const STREAM_READ_ACTIONS: &[&str] = &[
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
];

const SQS_CONSUMER_ACTIONS: &[&str] = &[
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
];

/// (resource as `!GetAtt X.Y`, actions) a function needs: nothing more, nothing less.
fn expected_grants(binary: &str) -> BTreeMap<(String, String), BTreeSet<String>> {
    let table = table_id().to_string();
    let set = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();
    let mut m = BTreeMap::new();
    match binary {
        "b24-fn-purge" => {
            m.insert(
                (table.clone(), "Arn".into()),
                set(&[
                    "dynamodb:Query",
                    "dynamodb:DeleteItem",
                    "dynamodb:UpdateItem",
                ]),
            );
            m.insert((table, "StreamArn".into()), set(STREAM_READ_ACTIONS));
            m.insert(
                ("PurgeFailuresQueue".into(), "Arn".into()),
                set(&["sqs:SendMessage"]),
            );
        }
        "b24-fn-redrive" => {
            m.insert((table, "Arn".into()), set(WEBHOOK_ACTIONS));
            m.insert(
                ("ParkedQueue".into(), "Arn".into()),
                set(&[
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                ]),
            );
        }
        "b24-fn-outbox" => {
            // GetItem: the portal's domain for the changes of its other records.
            m.insert((table.clone(), "Arn".into()), set(&["dynamodb:GetItem"]));
            m.insert((table, "StreamArn".into()), set(STREAM_READ_ACTIONS));
            m.insert(
                ("ChangesQueue".into(), "Arn".into()),
                set(&["sqs:SendMessage"]),
            );
            m.insert(
                ("OutboxFailuresQueue".into(), "Arn".into()),
                set(&["sqs:SendMessage"]),
            );
            m.insert(
                ("PortalTasksQueue".into(), "Arn".into()),
                set(&["sqs:SendMessage"]),
            );
        }
        "b24-fn-binder" => {
            m.insert(
                (table, "Arn".into()),
                set(&[
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                ]),
            );
            m.insert(
                ("TokensKey".into(), "Arn".into()),
                set(&["kms:Decrypt", "kms:Encrypt"]),
            );
            m.insert(
                ("PortalTasksQueue".into(), "Arn".into()),
                set(SQS_CONSUMER_ACTIONS),
            );
        }
        "b24-fn-acks" => {
            m.insert(
                (table, "Arn".into()),
                set(&["dynamodb:GetItem", "dynamodb:UpdateItem"]),
            );
            m.insert(
                ("TokensKey".into(), "Arn".into()),
                set(&["kms:Decrypt", "kms:Encrypt"]),
            );
            m.insert(
                ("AcksQueue".into(), "Arn".into()),
                set(SQS_CONSUMER_ACTIONS),
            );
        }
        "b24-fn-app" => {
            m.insert((table, "Arn".into()), set(WEBHOOK_ACTIONS));
            m.insert(
                ("ParkedQueue".into(), "Arn".into()),
                set(&["sqs:SendMessage"]),
            );
            // A verified install seals the portal's new tokens; it never opens them.
            m.insert(("TokensKey".into(), "Arn".into()), set(&["kms:Encrypt"]));
        }
        b if Family::ALL.iter().any(|f| binary_name(*f) == b) => {
            m.insert((table, "Arn".into()), set(WEBHOOK_ACTIONS));
            m.insert(
                ("ParkedQueue".into(), "Arn".into()),
                set(&["sqs:SendMessage"]),
            );
        }
        other => panic!("no expected permissions for {other}: add them to this test"),
    }
    m
}

#[test]
fn least_privilege_for_every_function() {
    for (binary, (id, f)) in functions() {
        let props = effective_properties(f);
        assert!(
            get(&props, "Role").is_none(),
            "{id}: use Policies, not a shared Role"
        );
        let policies = get(&props, "Policies").map(as_list).unwrap_or_default();
        let mut grants: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for policy in policies {
            // Only inline policy documents: no SAM policy templates (DynamoDBCrudPolicy allows
            // Scan/DeleteItem/...), no managed policy names or ARNs.
            let statements = get(policy, "Statement")
                .unwrap_or_else(|| panic!("{id}: policy {policy:?} must be an inline document"));
            for st in as_list(statements) {
                // A conditional statement (`!If [Cond, statement, !Ref AWS::NoValue]`) is checked
                // by the test of its condition; with the defaults it must be absent.
                if let Some((f, args)) = intrinsic(st) {
                    assert_eq!(f, "Fn::If", "{id}: statement {st:?}");
                    let args = args.as_sequence().expect("!If arguments");
                    let cond = args[0].as_str().expect("condition name");
                    assert!(
                        !condition(cond, &BTreeMap::new()),
                        "{id}: {cond} is off by default"
                    );
                    assert_eq!(ref_target(&args[2]), Some("AWS::NoValue"), "{id}: {cond}");
                    continue;
                }
                assert_eq!(get(st, "Effect").and_then(s), Some("Allow"), "{id}: Effect");
                let resources = as_list(at(st, &["Resource"]));
                assert_eq!(resources.len(), 1, "{id}: one resource per statement");
                let resource = getatt(resources[0])
                    .unwrap_or_else(|| panic!("{id}: resources are !GetAtt X.Arn / StreamArn"));
                let actions = as_list(at(st, &["Action"]));
                if actions
                    .iter()
                    .any(|a| a.as_str().is_some_and(|a| a.starts_with("kms:")))
                {
                    let keys = at(
                        st,
                        &[
                            "Condition",
                            "ForAllValues:StringEquals",
                            "kms:EncryptionContextKeys",
                        ],
                    );
                    assert_eq!(
                        as_list(keys)
                            .iter()
                            .filter_map(|k| k.as_str())
                            .collect::<Vec<_>>(),
                        ["member_id"],
                        "{id}: KMS use bound to the member_id encryption context"
                    );
                }
                for a in actions {
                    let a = a.as_str().expect("action string");
                    assert!(!a.contains('*'), "{id}: wildcard action {a}");
                    grants
                        .entry(resource.clone())
                        .or_default()
                        .insert(a.to_string());
                }
            }
        }
        assert_eq!(
            grants,
            expected_grants(&binary),
            "{id}: permissions of {binary}"
        );
        assert!(get(&props, "VpcConfig").is_none(), "{id}: no VPC");
    }
}

// ------------------------------------------------------------------------------------------
// Queues and queue consumers

fn queue_props(id: &str) -> &'static Value {
    let q = resource(id);
    assert_eq!(get(q, "Type").and_then(s), Some("AWS::SQS::Queue"), "{id}");
    at(q, &["Properties"])
}

fn number(v: &Value) -> i64 {
    scalar_string(v)
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("not a number: {v:?}"))
}

#[test]
fn the_parked_queue_is_durable_encrypted_and_drained_by_the_redrive() {
    for id in ["ParkedQueue", "ParkedDeadLetterQueue"] {
        let p = queue_props(id);
        assert_eq!(
            at(p, &["SqsManagedSseEnabled"]).as_bool(),
            Some(true),
            "{id}: SSE"
        );
        assert_eq!(
            number(at(p, &["MessageRetentionPeriod"])),
            14 * 86_400,
            "{id}: 14 days"
        );
        assert_eq!(
            number(at(p, &["MaximumMessageSize"])),
            1_048_576,
            "{id}: a parked event of a 1 MiB body fits"
        );
    }
    let p = queue_props("ParkedQueue");
    let redrive = at(p, &["RedrivePolicy"]);
    assert_eq!(
        getatt(at(redrive, &["deadLetterTargetArn"])),
        Some(("ParkedDeadLetterQueue".to_string(), "Arn".to_string()))
    );
    let receives = number(at(redrive, &["maxReceiveCount"]));
    assert!((5..=100).contains(&receives), "maxReceiveCount {receives}");

    let (id, f) = functions()["b24-fn-redrive"];
    let props = effective_properties(f);
    let events = at(&props, &["Events"]).as_mapping().expect("Events");
    assert_eq!(events.len(), 1, "{id}: one event source");
    let (_, ev) = events.iter().next().unwrap();
    assert_eq!(get(ev, "Type").and_then(s), Some("SQS"));
    let ep = at(ev, &["Properties"]);
    assert_eq!(
        getatt(at(ep, &["Queue"])),
        Some(("ParkedQueue".to_string(), "Arn".to_string()))
    );
    assert_eq!(
        as_list(at(ep, &["FunctionResponseTypes"]))
            .iter()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>(),
        ["ReportBatchItemFailures"],
        "{id}: partial batch responses"
    );
    let timeout = number(at(&props, &["Timeout"]));
    assert!(
        number(at(p, &["VisibilityTimeout"])) >= timeout,
        "the queue's visibility timeout must cover the function's timeout"
    );
    // Alarms: DLQ depth and the oldest parked message's age.
    let alarms = resources_of_type("AWS::CloudWatch::Alarm");
    let on_queue = |queue: &str, metric: &str| {
        alarms.iter().any(|(_, a)| {
            let p = at(a, &["Properties"]);
            get(p, "MetricName").and_then(s) == Some(metric)
                && dimensions(p).iter().any(|(k, v)| {
                    k == "QueueName"
                        && getatt(v) == Some((queue.to_string(), "QueueName".to_string()))
                })
        })
    };
    assert!(on_queue(
        "ParkedDeadLetterQueue",
        "ApproximateNumberOfMessagesVisible"
    ));
    assert!(on_queue("ParkedQueue", "ApproximateAgeOfOldestMessage"));
    // The local runner plays this mapping (scripts/runner.json).
    let runner: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("scripts/runner.json")).expect("runner.json"),
    )
    .expect("runner.json is JSON");
    let local = runner["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|src| src["function"] == "b24-fn-redrive")
        .expect("a runner source for b24-fn-redrive");
    assert_eq!(local["kind"], "sqs");
    assert_eq!(local["report_batch_item_failures"], true);
    assert_eq!(
        local["batch_size"].as_i64(),
        Some(number(at(ep, &["BatchSize"]))),
        "the local runner's batch size is the template's"
    );
    // A table that just came back is not flooded with the whole backlog at once.
    let concurrency = number(at(ep, &["ScalingConfig", "MaximumConcurrency"]));
    assert!(
        (2..=20).contains(&concurrency),
        "{id}: MaximumConcurrency {concurrency}"
    );
}

// ------------------------------------------------------------------------------------------
// Stream consumers

/// The stream event source of a function: its properties.
fn stream_source(id: &str, f: &Value) -> Value {
    let events = get(&effective_properties(f), "Events")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    let streams: Vec<_> = events
        .iter()
        .filter(|(_, e)| get(e, "Type").and_then(s) == Some("DynamoDB"))
        .collect();
    assert_eq!(streams.len(), 1, "{id}: one DynamoDB stream event source");
    at(streams[0].1, &["Properties"]).clone()
}

fn filters_of(id: &str, props: &Value) -> Vec<serde_json::Value> {
    as_list(at(props, &["FilterCriteria", "Filters"]))
        .into_iter()
        .map(|f| {
            let text = at(f, &["Pattern"]).as_str().expect("Pattern string");
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{id}: Pattern is not JSON: {e}"))
        })
        .collect()
}

/// Checks the stream event source of `binary` against the code's `filter` and the local
/// runner's source; returns the mapping's properties.
fn check_stream_consumer(binary: &str, filter: &str, max_retries: i64) -> Value {
    let (id, f) = functions()[binary];
    let props = stream_source(id, f);
    assert_eq!(
        getatt(at(&props, &["Stream"])),
        Some((table_id().to_string(), "StreamArn".to_string())),
        "{id}: the table's stream"
    );
    let want: serde_json::Value = serde_json::from_str(filter).expect("code filter is JSON");
    assert_eq!(
        filters_of(id, &props),
        vec![want],
        "{id}: filter = the code's STREAM_FILTER"
    );
    assert_eq!(
        as_list(at(&props, &["FunctionResponseTypes"]))
            .iter()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>(),
        ["ReportBatchItemFailures"],
        "{id}: partial batch responses"
    );
    assert_eq!(
        at(&props, &["BisectBatchOnFunctionError"]).as_bool(),
        Some(true)
    );
    let retries = scalar_string(at(&props, &["MaximumRetryAttempts"]))
        .and_then(|r| r.parse::<i64>().ok())
        .expect("MaximumRetryAttempts");
    assert!(
        (0..=max_retries).contains(&retries),
        "{id}: bounded retries ({retries})"
    );
    assert_eq!(
        at(&props, &["StartingPosition"]).as_str(),
        Some("TRIM_HORIZON"),
        "{id}: no marker written before the mapping exists is skipped"
    );
    let dest = at(&props, &["DestinationConfig", "OnFailure"]);
    assert_eq!(at(dest, &["Type"]).as_str(), Some("SQS"));
    let (queue, attr) = getatt(at(dest, &["Destination"])).expect("!GetAtt queue.Arn");
    assert_eq!(attr, "Arn");
    let q = resource(&queue);
    assert_eq!(get(q, "Type").and_then(s), Some("AWS::SQS::Queue"));
    assert_eq!(
        at(q, &["Properties", "SqsManagedSseEnabled"]).as_bool(),
        Some(true),
        "{queue}: encrypted"
    );
    // The local runner plays this mapping with the same filter (scripts/runner.json).
    let runner: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("scripts/runner.json")).expect("runner.json"),
    )
    .expect("runner.json is JSON");
    let local = runner["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|src| src["function"] == binary)
        .unwrap_or_else(|| panic!("a runner source for {binary}"));
    let local_filters: Vec<serde_json::Value> = local["filters"]
        .as_array()
        .expect("filters")
        .iter()
        .map(|f| match f {
            serde_json::Value::String(t) => serde_json::from_str(t).expect("filter JSON"),
            other => other.clone(),
        })
        .collect();
    assert_eq!(
        local_filters,
        filters_of(id, &props),
        "runner.json filter = template filter"
    );
    assert_eq!(local["report_batch_item_failures"], true);
    assert_eq!(local["bisect"], true);
    assert_eq!(
        local["starting_position"], "TRIM_HORIZON",
        "{binary}: the runner starts where the mapping does"
    );
    props
}

#[test]
fn the_purge_function_consumes_the_stream_as_the_code_expects() {
    check_stream_consumer("b24-fn-purge", b24_consumers::purge::STREAM_FILTER, 100);
}

#[test]
fn the_outbox_publishes_the_stream_to_a_durable_fifo_change_feed() {
    // Retries are bounded by the record age (the stream's own 24 h retention): a change is
    // never given up while the queue may still come back.
    let props = check_stream_consumer(
        "b24-fn-outbox",
        b24_consumers::outbox::STREAM_FILTER,
        10_000,
    );
    let age = number(at(&props, &["MaximumRecordAgeInSeconds"]));
    assert!((3_600..=86_400).contains(&age), "record age {age}");
    assert_eq!(
        number(at(&props, &["ParallelizationFactor"])),
        1,
        "one batch per shard at a time keeps the stream order"
    );
    assert_eq!(
        getatt(at(
            &props,
            &["DestinationConfig", "OnFailure", "Destination"]
        )),
        Some(("OutboxFailuresQueue".to_string(), "Arn".to_string()))
    );
    // The feed: FIFO, deduplicated by the change id the code sets, encrypted, durable, with a
    // FIFO DLQ.
    let q = queue_props("ChangesQueue");
    assert_eq!(at(q, &["FifoQueue"]).as_bool(), Some(true));
    assert_eq!(
        at(q, &["ContentBasedDeduplication"]).as_bool(),
        Some(false),
        "the change id is the deduplication id"
    );
    assert_eq!(at(q, &["SqsManagedSseEnabled"]).as_bool(), Some(true));
    assert_eq!(number(at(q, &["MessageRetentionPeriod"])), 14 * 86_400);
    assert!(
        sub_string(at(q, &["QueueName"])).is_some_and(|n| n.ends_with("changes.fifo")),
        "the queue is named changes.fifo"
    );
    let dlq = getatt(at(q, &["RedrivePolicy", "deadLetterTargetArn"])).expect("DLQ");
    assert_eq!(dlq.1, "Arn");
    assert_eq!(
        at(queue_props(&dlq.0), &["FifoQueue"]).as_bool(),
        Some(true)
    );
    // The function publishes to the queue the template made, on the bus only when configured.
    let (id, f) = functions()["b24-fn-outbox"];
    let fp = effective_properties(f);
    let vars = at(&fp, &["Environment", "Variables"]);
    assert_eq!(
        ref_target(at(vars, &["CHANGES_QUEUE_URL"])),
        Some("ChangesQueue")
    );
    let off = environment(f, &BTreeMap::new());
    assert_eq!(
        off.get("CHANGES_EVENT_BUS").map(String::as_str),
        Some(""),
        "{id}"
    );
    let on = environment(
        f,
        &BTreeMap::from([("ChangesEventBusName", "vendor-bus".to_string())]),
    );
    assert_eq!(
        on.get("CHANGES_EVENT_BUS").map(String::as_str),
        Some("vendor-bus")
    );
    // With a bus: exactly PutEvents on that bus.
    let statements: Vec<&Value> = as_list(at(&fp, &["Policies"]))
        .into_iter()
        .flat_map(|p| as_list(at(p, &["Statement"])))
        .filter_map(|st| intrinsic(st).map(|(_, args)| args))
        .collect();
    assert_eq!(statements.len(), 1, "{id}: one conditional statement");
    let args = statements[0].as_sequence().expect("!If");
    assert_eq!(args[0].as_str(), Some("HasChangesBus"));
    assert!(condition(
        "HasChangesBus",
        &BTreeMap::from([("ChangesEventBusName", "vendor-bus".to_string())])
    ));
    let st = &args[1];
    let actions: Vec<_> = as_list(at(st, &["Action"]))
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(actions, ["events:PutEvents"]);
    let arn = sub_string(at(st, &["Resource"])).expect("!Sub bus ARN");
    assert!(arn.ends_with(":event-bus/${ChangesEventBusName}"), "{arn}");
    // Alarms: iterator age, the on-failure queue and the changes DLQ.
    let alarms = resources_of_type("AWS::CloudWatch::Alarm");
    let has = |metric: &str, dim: &str, target: (&str, &str)| {
        alarms.iter().any(|(_, a)| {
            let p = at(a, &["Properties"]);
            get(p, "MetricName").and_then(s) == Some(metric)
                && dimensions(p).iter().any(|(k, v)| {
                    k == dim
                        && (getatt(v) == Some((target.0.to_string(), target.1.to_string()))
                            || (target.1.is_empty() && ref_target(v) == Some(target.0)))
                })
        })
    };
    assert!(has("IteratorAge", "FunctionName", ("OutboxFunction", "")));
    assert!(has(
        "ApproximateNumberOfMessagesVisible",
        "QueueName",
        ("OutboxFailuresQueue", "QueueName")
    ));
    assert!(has(
        "ApproximateNumberOfMessagesVisible",
        "QueueName",
        ("ChangesDeadLetterQueue", "QueueName")
    ));
}

// ------------------------------------------------------------------------------------------
// Logs, alarms, dashboard

#[test]
fn every_function_logs_json_to_its_own_retained_log_group() {
    // Lambda's level filter treats JSON lines without "level" (the EMF metric records) as
    // INFO: an application log level above INFO would silently drop every product metric.
    let levels: Vec<String> = at(template(), &["Parameters", "LogLevel", "AllowedValues"])
        .as_sequence()
        .expect("LogLevel.AllowedValues")
        .iter()
        .filter_map(scalar_string)
        .collect();
    for level in &levels {
        assert!(
            ["TRACE", "DEBUG", "INFO"].contains(&level.as_str()),
            "LogLevel {level} would filter out the metric records"
        );
    }
    for (binary, (id, f)) in functions() {
        let suffix = binary.trim_start_matches("b24-fn-");
        let p = effective_properties(f);
        assert_eq!(
            get(at(&p, &["LoggingConfig"]), "ApplicationLogLevel").and_then(ref_target),
            Some("LogLevel"),
            "{id}: LoggingConfig.ApplicationLogLevel must be !Ref LogLevel"
        );
        assert_eq!(
            at(&p, &["LoggingConfig", "LogFormat"]).as_str(),
            Some("JSON"),
            "{id}: LoggingConfig.LogFormat"
        );
        let group_id = ref_target(at(&p, &["LoggingConfig", "LogGroup"]))
            .unwrap_or_else(|| panic!("{id}: LoggingConfig.LogGroup must be !Ref a log group"));
        let group = resource(group_id);
        assert_eq!(get(group, "Type").and_then(s), Some("AWS::Logs::LogGroup"));
        let gp = at(group, &["Properties"]);
        assert!(
            get(gp, "RetentionInDays").is_some(),
            "{group_id}: RetentionInDays"
        );
        let fn_name = get(&p, "FunctionName")
            .and_then(sub_string)
            .unwrap_or_else(|| panic!("{id}: FunctionName must be a !Sub string"));
        assert!(fn_name.ends_with(suffix), "{id}: FunctionName {fn_name}");
        assert_eq!(
            get(gp, "LogGroupName").and_then(sub_string),
            Some(format!("/aws/lambda/{fn_name}").as_str()),
            "{group_id}: LogGroupName must be /aws/lambda/<function name>"
        );
    }
}

fn product_metric_names() -> BTreeSet<&'static str> {
    let mut all = BTreeSet::from([
        names::REQUESTS,
        names::AUTH_FAILURES,
        names::DECODE_FAILURES,
        names::DUPLICATES,
        names::STALE_EVENTS,
        names::STORAGE_ERRORS,
        names::LATENCY,
        names::EVENTS,
    ]);
    all.extend(names::CONSUMER_METRICS.iter().copied());
    all
}

/// Every `Metric` block of an alarm (plain or metric math).
fn alarm_metrics(alarm: &Value) -> Vec<Value> {
    let p = at(alarm, &["Properties"]);
    if let Some(ms) = get(p, "Metrics").and_then(Value::as_sequence) {
        ms.iter()
            .filter_map(|m| {
                get(m, "MetricStat")
                    .and_then(|st| get(st, "Metric"))
                    .cloned()
            })
            .collect()
    } else {
        vec![p.clone()]
    }
}

fn dimensions(metric: &Value) -> Vec<(String, Value)> {
    get(metric, "Dimensions")
        .and_then(Value::as_sequence)
        .map(|ds| {
            ds.iter()
                .map(|d| {
                    (
                        at(d, &["Name"]).as_str().expect("name").to_string(),
                        at(d, &["Value"]).clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn alarms_cover_functions_api_auth_and_table_with_the_code_metric_names() {
    let alarms = resources_of_type("AWS::CloudWatch::Alarm");
    let product = product_metric_names();
    let mut auth_families = BTreeSet::new();
    let mut lambda_alarms: BTreeSet<(String, String)> = BTreeSet::new();
    let mut api_5xx = false;
    let mut table_throttles = false;
    for (id, alarm) in &alarms {
        let p = at(alarm, &["Properties"]);
        for key in ["AlarmActions", "OKActions"] {
            let v = get(p, key).unwrap_or_else(|| panic!("{id}: {key}"));
            let (f, arg) = intrinsic(v)
                .unwrap_or_else(|| panic!("{id}: {key} must be !If [HasAlarmTopic, ...]"));
            assert_eq!(f, "Fn::If", "{id}: {key}");
            assert_eq!(
                arg.as_sequence().and_then(|a| a[0].as_str()),
                Some("HasAlarmTopic")
            );
        }
        for m in alarm_metrics(alarm) {
            let ns = at(&m, &["Namespace"]);
            let name = at(&m, &["MetricName"])
                .as_str()
                .expect("MetricName")
                .to_string();
            let dims = dimensions(&m);
            if ref_target(ns) == Some("MetricsNamespace") {
                assert!(
                    product.contains(name.as_str()),
                    "{id}: the code emits no metric {name}"
                );
                for (k, v) in &dims {
                    assert!(
                        ["Family", "Event", "Outcome", "Function"].contains(&k.as_str()),
                        "{id}: dimension {k}"
                    );
                    if k == "Family" {
                        let v = v.as_str().expect("family value");
                        let fam = Family::parse(v).unwrap_or_else(|| panic!("{id}: family {v}"));
                        assert_eq!(fam.as_str(), v, "{id}: family spelled as the code does");
                        if name == names::AUTH_FAILURES {
                            auth_families.insert(fam);
                        }
                    }
                }
            }
            match ns.as_str() {
                Some("AWS/Lambda") => {
                    for (k, v) in &dims {
                        if k == "FunctionName" {
                            lambda_alarms.insert((
                                ref_target(v).expect("!Ref function").to_string(),
                                name.clone(),
                            ));
                        }
                    }
                }
                Some("AWS/ApiGateway") if name == "5xx" => api_5xx = true,
                Some("AWS/DynamoDB") if name.contains("Throttle") => {
                    let t = dims
                        .iter()
                        .find(|(k, _)| k == "TableName")
                        .map(|(_, v)| ref_target(v));
                    assert_eq!(t, Some(Some(table_id())), "{id}: table dimension");
                    table_throttles = true;
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        auth_families,
        Family::ALL.iter().copied().collect(),
        "the AuthFailures alarm must cover every family"
    );
    for (_, (id, _)) in functions() {
        for metric in ["Errors", "Throttles"] {
            assert!(
                lambda_alarms.contains(&(id.to_string(), metric.to_string())),
                "{id}: no {metric} alarm"
            );
        }
    }
    assert!(api_5xx, "no API 5xx alarm");
    assert!(table_throttles, "no DynamoDB throttle alarm");
    assert_eq!(
        parameter_default("MetricsNamespace").as_deref(),
        Some("Bitrix24Receiver"),
        "MetricsNamespace default = the code's default namespace"
    );
}

#[test]
fn dashboard_is_valid_json_and_shows_every_product_metric() {
    let dashboards = resources_of_type("AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1, "one dashboard");
    let (id, d) = dashboards[0];
    let body = sub_string(at(d, &["Properties", "DashboardBody"]))
        .unwrap_or_else(|| panic!("{id}: DashboardBody must be a !Sub string"));
    // Replace ${...} with a placeholder (they never contain quotes) and parse.
    let mut plain = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("${") {
        plain.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("unterminated ${") + start;
        let var = &rest[start + 2..end];
        if let Some(attr) = var.split_once('.') {
            let r = resource(attr.0);
            assert!(get(r, "Type").is_some(), "{id}: ${{{var}}}");
        } else if !var.starts_with("AWS::") {
            assert!(
                resources().contains_key(var)
                    || get(at(template(), &["Parameters"]), var).is_some(),
                "{id}: ${{{var}}} names nothing"
            );
        }
        plain.push('X');
        rest = &rest[end + 1..];
    }
    plain.push_str(rest);
    let json: serde_json::Value = serde_json::from_str(&plain)
        .unwrap_or_else(|e| panic!("{id}: DashboardBody is not JSON: {e}"));
    assert!(
        json["widgets"].as_array().is_some_and(|w| !w.is_empty()),
        "{id}: widgets"
    );
    for name in product_metric_names() {
        assert!(
            plain.contains(&format!("\"{name}\""))
                || plain.contains(&format!("MetricName=\\\"{name}\\\"")),
            "{id}: no widget shows {name}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// Talking back to Bitrix24

#[test]
fn talking_back_is_wired_as_the_code_expects() {
    let set = BTreeMap::from([
        ("Bitrix24ClientId", "app.0123.abcd".to_string()),
        (
            "Bitrix24ClientSecretParameter",
            "/bitrix24/client-secret".to_string(),
        ),
    ]);
    let none = BTreeMap::new();
    assert!(!condition("HasClientSecret", &none));
    assert!(condition("HasClientSecret", &set));
    // A secret parameter without a client id turns nothing on.
    assert!(!condition(
        "HasClientSecret",
        &BTreeMap::from([("Bitrix24ClientSecretParameter", "/x".to_string())])
    ));
    for binary in ["b24-fn-app", "b24-fn-binder", "b24-fn-acks"] {
        let (id, f) = functions()[binary];
        // Off by default; on, the code's config accepts the template's environment.
        let off = environment(f, &none);
        assert!(
            b24_pipeline::TalkbackConfig::from_lookup(|k| off.get(k).cloned())
                .unwrap()
                .is_none(),
            "{id}: talking back is off by default"
        );
        let on = environment(f, &set);
        let config = b24_pipeline::TalkbackConfig::from_lookup(|k| on.get(k).cloned())
            .unwrap_or_else(|e| panic!("{id}: {e}"))
            .unwrap_or_else(|| panic!("{id}: talking back is on with the secret"));
        assert_eq!(config.secret_parameter, "/bitrix24/client-secret");
        assert!(
            !config.allow_local,
            "{id}: never the local-test switch in AWS"
        );
        assert_eq!(config.oauth_url, None, "{id}: the OAuth host is fixed");
        let fp = effective_properties(f);
        let raw = at(&fp, &["Environment", "Variables"]);
        assert_eq!(
            getatt(at(raw, &["TOKENS_KMS_KEY_ID"])),
            Some(("TokensKey".to_string(), "Arn".to_string())),
            "{id}: the vault's key"
        );
        // With the secret: exactly ssm:GetParameter on that parameter.
        let st: Vec<&Value> = as_list(at(&fp, &["Policies"]))
            .into_iter()
            .flat_map(|p| as_list(at(p, &["Statement"])))
            .filter_map(|st| intrinsic(st).map(|(_, a)| a))
            .filter(|a| a.as_sequence().and_then(|a| a[0].as_str()) == Some("HasClientSecret"))
            .collect();
        assert_eq!(st.len(), 1, "{id}: one conditional ClientSecret statement");
        let st = &st[0].as_sequence().unwrap()[1];
        assert_eq!(
            as_list(at(st, &["Action"]))
                .iter()
                .filter_map(|a| a.as_str())
                .collect::<Vec<_>>(),
            ["ssm:GetParameter"]
        );
        let arn = sub_string(at(st, &["Resource"])).expect("!Sub parameter ARN");
        assert!(
            arn.ends_with(":parameter${Bitrix24ClientSecretParameter}"),
            "{arn}"
        );
    }
    // The OAuth override never reaches AWS.
    for (binary, (id, f)) in functions() {
        let env = environment(f, &set);
        assert!(!env.contains_key("BITRIX24_OAUTH_URL"), "{id} ({binary})");
    }
    // The key: rotated, retained, usable only through IAM (which grants per function).
    let key = at(resource("TokensKey"), &["Properties"]);
    assert_eq!(at(key, &["EnableKeyRotation"]).as_bool(), Some(true));
    let statements = as_list(at(key, &["KeyPolicy", "Statement"]));
    assert_eq!(statements.len(), 1, "only the account's delegation to IAM");
    // The binder binds to the stack's own API, one URL per family.
    let (_, binder) = functions()["b24-fn-binder"];
    let bp = effective_properties(binder);
    let template = sub_string(at(
        &bp,
        &["Environment", "Variables", "HANDLER_URL_TEMPLATE"],
    ))
    .expect("!Sub handler template");
    assert!(
        template.starts_with("https://${HttpApi}.execute-api.")
            && template.ends_with("/bitrix24/{family}"),
        "{template}"
    );
    let handlers =
        b24_consumers::binder::Handlers::new(template.replace("${HttpApi}", "abc")).unwrap();
    let bound: BTreeSet<String> = handlers.bindings().into_iter().map(|(e, _)| e).collect();
    assert_eq!(
        bound.len(),
        9,
        "seven connector events, ONAPPUPDATE, ONAPPUNINSTALL"
    );
    assert!(!bound.iter().any(|e| e.eq_ignore_ascii_case("ONAPPINSTALL")));
    // The outbox hands portal changes to the binder's queue.
    let (_, outbox) = functions()["b24-fn-outbox"];
    assert_eq!(
        ref_target(at(
            &effective_properties(outbox),
            &["Environment", "Variables", "PORTAL_TASKS_QUEUE_URL"]
        )),
        Some("PortalTasksQueue")
    );
    // Both consumers: SQS with partial batch responses, as the local runner plays them.
    let runner: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("scripts/runner.json")).expect("runner.json"),
    )
    .unwrap();
    for (binary, queue, dlq) in [
        (
            "b24-fn-binder",
            "PortalTasksQueue",
            "PortalTasksDeadLetterQueue",
        ),
        ("b24-fn-acks", "AcksQueue", "AcksDeadLetterQueue"),
    ] {
        let (id, f) = functions()[binary];
        let props = effective_properties(f);
        let events = at(&props, &["Events"]).as_mapping().expect("Events");
        assert_eq!(events.len(), 1, "{id}");
        let ep = at(events.iter().next().unwrap().1, &["Properties"]);
        assert_eq!(
            getatt(at(ep, &["Queue"])),
            Some((queue.to_string(), "Arn".to_string()))
        );
        assert_eq!(
            as_list(at(ep, &["FunctionResponseTypes"]))
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>(),
            ["ReportBatchItemFailures"]
        );
        let q = queue_props(queue);
        assert_eq!(at(q, &["SqsManagedSseEnabled"]).as_bool(), Some(true));
        assert!(
            number(at(q, &["VisibilityTimeout"])) >= number(at(&props, &["Timeout"])),
            "{queue}"
        );
        assert_eq!(
            getatt(at(q, &["RedrivePolicy", "deadLetterTargetArn"])),
            Some((dlq.to_string(), "Arn".to_string()))
        );
        let local = runner["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["function"] == binary)
            .unwrap_or_else(|| panic!("a runner source for {binary}"));
        assert_eq!(local["kind"], "sqs");
        assert_eq!(local["report_batch_item_failures"], true);
        assert_eq!(
            local["batch_size"].as_i64(),
            Some(number(at(ep, &["BatchSize"]))),
            "{binary}"
        );
        // The DLQ is alarmed.
        let alarmed = resources_of_type("AWS::CloudWatch::Alarm")
            .iter()
            .any(|(_, a)| {
                dimensions(at(a, &["Properties"])).iter().any(|(k, v)| {
                    k == "QueueName"
                        && getatt(v) == Some((dlq.to_string(), "QueueName".to_string()))
                })
            });
        assert!(alarmed, "{dlq} alarm");
    }
    // Portals that need a reinstall are alarmed, from both consumers' metric.
    let alarm = at(resource("NeedsReinstallAlarm"), &["Properties"]);
    let metrics: Vec<String> = alarm_metrics(resource("NeedsReinstallAlarm"))
        .iter()
        .map(|m| at(m, &["MetricName"]).as_str().unwrap().to_string())
        .collect();
    assert_eq!(metrics, [names::NEEDS_REINSTALL, names::NEEDS_REINSTALL]);
    assert!(get(alarm, "Metrics").is_some());
}
