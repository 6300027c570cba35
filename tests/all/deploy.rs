//! `deploy/` against the engine it deploys: cfn-lint (the version `.ci/setup` pins) passes the
//! CloudFormation template; the task role grants exactly the IAM actions of the AWS SDK calls
//! in `engine/src` (and the ECS-agent call it makes for task protection), each on this stack's
//! own buckets, queue, topics or tasks; the ops listener's port is the same in the engine, the
//! health check, the image and the task definition; the task definition's
//! and the image's `MEDIAFLOW_*` environment is a configuration the engine accepts and agrees
//! with the queue (visibility, redrive) and `stopTimeout`; the image builds with the pinned
//! toolchain; the health-check script passes only on HTTP 200 from `/healthz`.
//!
//! the dashboard plots the job metrics the workers write (names and dimension sets from
//! `telemetry::emf`) and shows every alarm; checkov (pinned too) finds no failing check, and every check the template skips is named in
//! `deploy/README.md`.
//!
//! The template is read through cfn-lint's own YAML loader (short tags like `!Ref` and
//! `!GetAtt` become their long forms), so it is read exactly as cfn-lint checks it.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// SDK operations whose IAM actions are not `service:OperationName`. Extend this when the
/// engine starts calling one; an operation not listed maps to its own name (`receive_message`
/// → `sqs:ReceiveMessage`, `publish` → `sns:Publish`), and cfn-lint rejects a made-up action.
const ACTIONS: &[(&str, &str, &[&str])] = &[
    // A HEAD/GET of a missing key answers 404 only with s3:ListBucket on the bucket, 403
    // without it; the worker tells "not processed yet" and "source gone" by that 404.
    ("s3", "head_object", &["s3:GetObject", "s3:ListBucket"]),
    ("s3", "get_object", &["s3:GetObject", "s3:ListBucket"]),
    ("s3", "create_multipart_upload", &["s3:PutObject"]),
    ("s3", "upload_part", &["s3:PutObject"]),
    ("s3", "complete_multipart_upload", &["s3:PutObject"]),
    ("s3", "copy_object", &["s3:GetObject", "s3:PutObject"]),
    ("s3", "upload_part_copy", &["s3:GetObject", "s3:PutObject"]),
    ("s3", "list_objects", &["s3:ListBucket"]),
    ("s3", "list_objects_v2", &["s3:ListBucket"]),
    ("s3", "head_bucket", &["s3:ListBucket"]),
    ("s3", "list_parts", &["s3:ListMultipartUploadParts"]),
    (
        "s3",
        "list_multipart_uploads",
        &["s3:ListBucketMultipartUploads"],
    ),
    ("s3", "delete_objects", &["s3:DeleteObject"]),
    ("sqs", "delete_message_batch", &["sqs:DeleteMessage"]),
    (
        "sqs",
        "change_message_visibility_batch",
        &["sqs:ChangeMessageVisibility"],
    ),
    ("sqs", "send_message_batch", &["sqs:SendMessage"]),
];

/// AWS calls the engine makes without the SDK: a request to a local endpoint (found in
/// `engine/src` by its path) that AWS serves with the task role's credentials → the IAM
/// actions it needs. The ECS agent's task-protection endpoint calls `UpdateTaskProtection`.
const AGENT_CALLS: &[(&str, &[&str])] =
    &[("/task-protection/v1/state", &["ecs:UpdateTaskProtection"])];

/// IAM service prefixes of SDK crates whose prefix is not the crate's suffix.
const IAM_PREFIXES: &[(&str, &str)] = &[
    ("aws-sdk-eventbridge", "events"),
    ("aws-sdk-cloudwatchlogs", "logs"),
];

/// Resource types a task-role statement may be scoped to (a cluster only through the ARN of
/// its tasks, `task/<cluster>/*`).
const SCOPES: &[&str] = &[
    "AWS::S3::Bucket",
    "AWS::SQS::Queue",
    "AWS::SNS::Topic",
    "AWS::ECS::Cluster",
    "AWS::DynamoDB::Table",
];

/// Values for the parameters that have no default.
const STAND_INS: &[(&str, &str)] = &[(
    "ApiKeySha256",
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
)];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

fn python(code: &str, args: &[&str]) -> Output {
    Command::new("python3")
        .arg("-c")
        .arg(code)
        .args(args)
        .current_dir(root())
        .output()
        .expect("running python3")
}

/// The cfn-lint version `.ci/setup` installs.
fn pinned_cfn_lint() -> String {
    let setup = read(".ci/setup");
    let at = setup
        .find("cfn-lint==")
        .expect(".ci/setup pins cfn-lint (cfn-lint==X.Y.Z)");
    setup[at + "cfn-lint==".len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect()
}

/// cfn-lint's version, failing (not skipping) when it is missing or not the pinned one.
fn require_cfn_lint() {
    let out = python(
        "import importlib.metadata as m; print(m.version('cfn-lint'))",
        &[],
    );
    assert!(
        out.status.success(),
        "cfn-lint is not installed for python3 (run `bash .ci/setup`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let pinned = pinned_cfn_lint();
    assert_eq!(
        installed, pinned,
        "cfn-lint {installed} is installed but .ci/setup pins {pinned}: run `bash .ci/setup`"
    );
}

/// `deploy/cloudformation.yaml` as JSON, through cfn-lint's loader.
fn template() -> Value {
    require_cfn_lint();
    let out = python(
        "import json, sys\nfrom cfnlint.decode import cfn_yaml\nprint(json.dumps(cfn_yaml.load(sys.argv[1])))",
        &["deploy/cloudformation.yaml"],
    );
    assert!(
        out.status.success(),
        "loading deploy/cloudformation.yaml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("template as JSON")
}

fn resources(t: &Value) -> &serde_json::Map<String, Value> {
    t["Resources"].as_object().expect("Resources")
}

/// The one resource of `kind` matching `pred`, by logical id.
fn only<'a>(t: &'a Value, kind: &str, pred: impl Fn(&Value) -> bool) -> (&'a str, &'a Value) {
    let found: Vec<_> = resources(t)
        .iter()
        .filter(|(_, r)| r["Type"] == kind && pred(r))
        .collect();
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    (found[0].0.as_str(), found[0].1)
}

/// The task definition whose container runs `command` (`worker`, or `serve` for the API).
fn taskdef<'a>(t: &'a Value, command: &str) -> (&'a str, &'a Value) {
    only(t, "AWS::ECS::TaskDefinition", |r| {
        r["Properties"]["ContainerDefinitions"][0]["Command"][0] == command
    })
}

/// A string or a list of strings.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        other => panic!("expected a string or a list of strings, found {other}"),
    }
}

/// Logical ids a value refers to (`Ref`, `Fn::GetAtt`, `${Name}` in `Fn::Sub`).
fn references(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match (k.as_str(), x) {
                    ("Ref", Value::String(name)) => {
                        out.insert(name.clone());
                    }
                    ("Fn::GetAtt", Value::Array(a)) => {
                        if let Some(name) = a.first().and_then(Value::as_str) {
                            out.insert(name.to_string());
                        }
                    }
                    ("Fn::Sub", s) => {
                        let text = s.as_str().or_else(|| s[0].as_str()).unwrap_or_default();
                        for part in text.split("${").skip(1) {
                            let name = part.split(['}', '.']).next().unwrap_or_default();
                            out.insert(name.to_string());
                        }
                    }
                    _ => references(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

/// A template value as the stack would see it with every parameter at its default, in a
/// stand-in account and region (resources by their names, queues by a URL, topics by an ARN).
fn resolve(t: &Value, v: &Value) -> String {
    let name = |id: &str| -> String {
        match id {
            "AWS::Region" => "eu-west-1".into(),
            "AWS::AccountId" => "000000000000".into(),
            "AWS::Partition" => "aws".into(),
            "AWS::StackName" => "mediaflow".into(),
            "AWS::URLSuffix" => "amazonaws.com".into(),
            _ => {
                if let Some(p) = t["Parameters"].get(id) {
                    if let Some((_, v)) = STAND_INS.iter().find(|(n, _)| *n == id) {
                        return v.to_string();
                    }
                    let d = p
                        .get("Default")
                        .unwrap_or_else(|| panic!("parameter {id} has no default"));
                    return resolve(t, d);
                }
                let r = &t["Resources"][id];
                match r["Type"].as_str() {
                    Some("AWS::SQS::Queue") => {
                        format!("https://sqs.eu-west-1.amazonaws.com/000000000000/{id}")
                    }
                    Some("AWS::SNS::Topic") => format!("arn:aws:sns:eu-west-1:000000000000:{id}"),
                    Some(_) => match r["Properties"].get("BucketName") {
                        Some(n) => resolve(t, n),
                        None => id.to_ascii_lowercase(),
                    },
                    None => panic!("{id} is neither a parameter nor a resource"),
                }
            }
        }
    };
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Object(o) if o.contains_key("Ref") => name(o["Ref"].as_str().expect("Ref name")),
        Value::Object(o) if o.contains_key("Fn::GetAtt") => {
            let a = strings(&o["Fn::GetAtt"]);
            format!("{}.{}", a[0], a[1])
        }
        Value::Object(o) if o.contains_key("Fn::Sub") => {
            let s = &o["Fn::Sub"];
            let mut text = s
                .as_str()
                .or_else(|| s[0].as_str())
                .expect("Sub")
                .to_string();
            while let Some(start) = text.find("${") {
                let end = start + text[start..].find('}').expect("closing }");
                let id = text[start + 2..end].to_string();
                let value = match id.split_once('.') {
                    Some((r, a)) => format!("{r}.{a}"),
                    None => name(&id),
                };
                text.replace_range(start..=end, &value);
            }
            text
        }
        other => panic!("cannot resolve {other}"),
    }
}

/// The IAM service prefix, the crate's Rust name and the operations (snake case) of each
/// `aws-sdk-*` crate the engine depends on, from the crates' sources (`src/operation/<name>/`).
fn sdk_operations() -> Vec<(String, String, BTreeSet<String>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let host = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    let host = String::from_utf8_lossy(&host.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("host triple");
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let engine = packages
        .iter()
        .find(|p| p["name"] == "mediaflow")
        .expect("the mediaflow package");
    let mut services = Vec::new();
    for dep in engine["dependencies"].as_array().expect("dependencies") {
        let krate = dep["name"].as_str().expect("name");
        let Some(suffix) = krate.strip_prefix("aws-sdk-") else {
            continue;
        };
        if !dep["kind"].is_null() {
            continue; // dev and build dependencies don't ship
        }
        let manifest = packages
            .iter()
            .find(|p| p["name"] == krate)
            .and_then(|p| p["manifest_path"].as_str())
            .unwrap_or_else(|| panic!("{krate} in cargo metadata"));
        let dir = Path::new(manifest)
            .parent()
            .expect("crate dir")
            .join("src/operation");
        let ops: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(ops.len() > 5, "{krate}: operations under {}", dir.display());
        let prefix = IAM_PREFIXES
            .iter()
            .find(|(k, _)| *k == krate)
            .map(|(_, p)| p.to_string())
            .unwrap_or_else(|| suffix.to_string());
        services.push((prefix, krate.replace('-', "_"), ops));
    }
    assert!(
        services.iter().any(|(p, _, _)| p == "s3") && services.iter().any(|(p, _, _)| p == "sqs"),
        "the engine depends on aws-sdk-s3 and aws-sdk-sqs"
    );
    services
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("reading engine/src")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// IAM action → where the engine's code calls an SDK operation that needs it (`file:line
/// .op()`). A call is `.<operation>()`: fluent SDK operations take no arguments. Only files
/// that name the SDK crate (`aws_sdk_sns::…`) are searched for its operations, so that
/// `watch::Sender::subscribe()` is not taken for SNS `Subscribe`. `engine/src/api/` is the
/// job API (`mediaflow serve --no-worker` and the operators' commands): it runs as its own
/// service with its own role, not with the worker's: `in_scope` says which files (paths
/// relative to the workspace) a role's process runs.
fn engine_calls(in_scope: impl Fn(&str) -> bool) -> BTreeMap<String, Vec<String>> {
    let services = sdk_operations();
    let mut files = Vec::new();
    rust_files(&root().join("engine/src"), &mut files);
    files.retain(|f| in_scope(&f.strip_prefix(root()).unwrap_or(f).display().to_string()));
    files.sort();
    let mut calls: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("reading a source file");
        let rel = file
            .strip_prefix(root())
            .unwrap_or(file)
            .display()
            .to_string();
        for (n, line) in text.lines().enumerate() {
            // Comments don't call anything (a URL's `://` is not a comment).
            if line.trim_start().starts_with("//") {
                continue;
            }
            let code = line.split(" //").next().unwrap_or_default();
            for (path, actions) in AGENT_CALLS {
                if code.contains(&format!("\"{path}\"")) {
                    for action in *actions {
                        calls
                            .entry(action.to_string())
                            .or_default()
                            .push(format!("{rel}:{} {path}", n + 1));
                    }
                }
            }
            for (prefix, krate, ops) in &services {
                if !text.contains(krate.as_str()) {
                    continue;
                }
                for op in ops {
                    if !code.contains(&format!(".{op}()")) {
                        continue;
                    }
                    let actions: Vec<String> =
                        match ACTIONS.iter().find(|(s, o, _)| s == prefix && o == op) {
                            Some((_, _, a)) => a.iter().map(|a| a.to_string()).collect(),
                            None => vec![format!("{prefix}:{}", pascal(op))],
                        };
                    for action in actions {
                        calls
                            .entry(action)
                            .or_default()
                            .push(format!("{rel}:{} .{op}()", n + 1));
                    }
                }
            }
        }
    }
    calls
}

fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The task role's logical id and its Allow statements (inline and attached policies).
fn task_role_statements(t: &Value, command: &str) -> (String, Vec<Value>) {
    let (_, taskdef) = taskdef(t, command);
    let role_ref = &taskdef["Properties"]["TaskRoleArn"];
    let mut names = BTreeSet::new();
    references(role_ref, &mut names);
    assert_eq!(names.len(), 1, "TaskRoleArn names one role: {role_ref}");
    let role = names.into_iter().next().expect("role");
    let props = &t["Resources"][&role]["Properties"];
    assert!(
        props.get("ManagedPolicyArns").is_none(),
        "{role}: managed policies grant actions nobody checks; use inline statements"
    );
    let mut docs: Vec<&Value> = props["Policies"]
        .as_array()
        .map(|ps| ps.iter().map(|p| &p["PolicyDocument"]).collect())
        .unwrap_or_default();
    for r in resources(t).values() {
        let kind = r["Type"].as_str().unwrap_or_default();
        if kind == "AWS::IAM::Policy" || kind == "AWS::IAM::ManagedPolicy" {
            let mut attached = BTreeSet::new();
            references(&r["Properties"]["Roles"], &mut attached);
            if attached.contains(&role) {
                docs.push(&r["Properties"]["PolicyDocument"]);
            }
        }
    }
    let mut statements = Vec::new();
    for doc in docs {
        for s in doc["Statement"].as_array().expect("Statement list") {
            assert!(
                s.get("NotAction").is_none() && s.get("NotResource").is_none(),
                "{role}: NotAction/NotResource grant more than they name: {s}"
            );
            if s["Effect"] == "Allow" {
                statements.push(s.clone());
            }
        }
    }
    (role, statements)
}

#[test]
fn cloudformation_template_passes_cfn_lint() {
    require_cfn_lint();
    let out = python(
        "import sys\nfrom cfnlint.runner import main\nmain()",
        &["deploy/cloudformation.yaml"],
    );
    assert!(
        out.status.success(),
        "cfn-lint {} on deploy/cloudformation.yaml (exit {:?}):\n{}{}",
        pinned_cfn_lint(),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The checkov `.ci/setup` installs, in its own virtualenv; fails (not skips) when missing.
fn checkov() -> Command {
    let setup = read(".ci/setup");
    let at = setup
        .find("'checkov==")
        .expect(".ci/setup pins checkov ('checkov==X.Y.Z')");
    let version: String = setup[at + "'checkov==".len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME");
    let bin = cache.join(format!("mediaflow-ci/checkov-{version}/bin/checkov"));
    assert!(
        bin.exists(),
        "checkov {version} is not installed at {} (run `bash .ci/setup`)",
        bin.display()
    );
    Command::new(bin)
}

#[test]
fn checkov_passes_the_template_and_every_skipped_check_is_explained() {
    let out = checkov()
        .args([
            "-f",
            "deploy/cloudformation.yaml",
            "--framework",
            "cloudformation",
        ])
        .args(["--output", "json", "--skip-download"])
        .current_dir(root())
        .output()
        .expect("running checkov");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov's JSON report: {e}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let results = &report["results"];
    let list = |key: &str| -> Vec<(String, String, String)> {
        results[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
                        (
                            s(&c["check_id"]),
                            s(&c["resource"]),
                            s(&c["check_result"]["suppress_comment"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(report["summary"]["parsing_errors"], 0, "{report}");
    assert!(
        report["summary"]["passed"].as_u64().unwrap_or(0) > 0,
        "checkov checked something: {}",
        report["summary"]
    );
    let failed = list("failed_checks");
    assert!(failed.is_empty(), "checkov checks failing: {failed:#?}");
    // Every check left unfixed carries its reason in the template and is named, with the
    // resource it concerns, in deploy/README.md.
    let readme = read("deploy/README.md");
    for (id, resource, why) in list("skipped_checks") {
        assert!(why.len() > 20, "{id} on {resource}: no reason given");
        let name = resource.rsplit('.').next().unwrap_or_default();
        assert!(
            readme
                .lines()
                .any(|l| l.contains(&format!("`{id}`")) && l.contains(name)),
            "deploy/README.md names {id} on {name} and why it is left"
        );
    }
}

#[test]
fn task_role_grants_exactly_the_aws_calls_the_engine_makes() {
    let t = template();
    let calls = engine_calls(|f| !f.starts_with("engine/src/api"));
    assert!(
        calls.contains_key("sqs:ReceiveMessage") && calls.contains_key("s3:PutObject"),
        "the scan of engine/src found the worker's calls: {calls:?}"
    );
    role_grants_exactly(&t, "worker", &calls);
}

/// AWS calls the API makes through modules it shares with the worker, each with a marker
/// that must be in the API's code: the explicit-job message sent through the queue.
const API_SHARED_CALLS: &[(&str, &str, &str)] =
    &[("sqs:SendMessage", "engine/src/api/jobs.rs", "s.queue.send(")];

#[test]
fn api_task_role_grants_exactly_the_aws_calls_the_api_makes() {
    let t = template();
    // The API's own code and the job index it opens (DynamoDB); not the operators' commands
    // (`mediaflow api-key`, `jobs`, table creation), which run with an operator's credentials.
    let mut calls = engine_calls(|f| {
        (f.starts_with("engine/src/api") || f.starts_with("engine/src/index"))
            && f != "engine/src/api/admin.rs"
    });
    for (action, file, marker) in API_SHARED_CALLS {
        assert!(
            read(file).contains(marker),
            "{file} no longer calls {marker}: update API_SHARED_CALLS"
        );
        calls
            .entry(action.to_string())
            .or_default()
            .push(format!("{file} {marker}"));
    }
    assert!(
        calls.contains_key("dynamodb:PutItem") && calls.contains_key("s3:PutObject"),
        "the scan found the API's calls (presigned PUTs, the index): {calls:?}"
    );
    assert!(
        !calls.contains_key("sqs:ReceiveMessage") && !calls.contains_key("s3:DeleteObject"),
        "the API neither consumes jobs nor deletes objects: {calls:?}"
    );
    role_grants_exactly(&t, "serve", &calls);
}

/// The role of the task running `command` grants exactly the IAM actions of `calls`, each
/// on this stack's resources.
fn role_grants_exactly(t: &Value, command: &str, calls: &BTreeMap<String, Vec<String>>) {
    let t = t.clone();
    let (role, statements) = task_role_statements(&t, command);
    let mut granted: BTreeMap<String, String> = BTreeMap::new(); // lowercase → as written
    for s in &statements {
        let sid = s["Sid"].as_str().unwrap_or("(no Sid)");
        let actions = strings(&s["Action"]);
        for a in &actions {
            assert!(!a.contains('*'), "{role} {sid}: wildcard action {a}");
            granted.insert(a.to_ascii_lowercase(), a.clone());
        }
        // Each statement names this stack's own buckets, queue or topics, never "*".
        for r in s["Resource"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![s["Resource"].clone()])
        {
            assert_ne!(r, Value::String("*".into()), "{role} {sid}: Resource \"*\"");
            let mut names = BTreeSet::new();
            references(&r, &mut names);
            assert!(
                names.iter().any(|n| {
                    SCOPES.contains(&t["Resources"][n]["Type"].as_str().unwrap_or_default())
                }),
                "{role} {sid}: resource {r} is none of this stack's buckets, queues, topics or tasks"
            );
            // A cluster is named only to scope its own tasks.
            for n in &names {
                if t["Resources"][n]["Type"] == "AWS::ECS::Cluster" {
                    let cluster = resolve(&t, &serde_json::json!({ "Ref": n }));
                    assert_eq!(
                        resolve(&t, &r),
                        format!("arn:aws:ecs:eu-west-1:000000000000:task/{cluster}/*"),
                        "{role} {sid}: only the tasks of cluster {n}"
                    );
                }
            }
            // Writes stay out of the plugin registry: only `mediaflow plugin publish` adds to it.
            if actions.iter().any(|a| a.starts_with("s3:Put")) {
                assert!(
                    !r.to_string().contains("/plugins/"),
                    "{role} {sid}: the task may not write the plugin registry: {r}"
                );
            }
        }
    }
    let called: BTreeSet<String> = calls.keys().map(|a| a.to_ascii_lowercase()).collect();
    let mut problems = Vec::new();
    for (action, sites) in calls {
        if !granted.contains_key(&action.to_ascii_lowercase()) {
            problems.push(format!(
                "  missing {action}: the engine calls it at {}",
                sites.join(", ")
            ));
        }
    }
    for (lower, action) in &granted {
        if !called.contains(lower) {
            problems.push(format!(
                "  extra {action}: granted, but no call in engine/src needs it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "task role {role} in deploy/cloudformation.yaml does not match the AWS calls in engine/src:\n{}\n\
         Grant or remove the action in {role} (scoped to this stack's resources); if an SDK \
         operation's IAM action is not its own name, add it to ACTIONS in tests/all/deploy.rs.",
        problems.join("\n")
    );
}

#[test]
fn task_environment_is_a_config_the_engine_accepts_and_matches_the_queue() {
    let t = template();
    let mut env: Vec<(String, String)> = Vec::new();
    // The image's ENV first, then the task definition's (which wins, as in ECS).
    for line in read("deploy/Dockerfile").lines() {
        if let Some(rest) = line.strip_prefix("ENV ") {
            let (k, v) = rest.split_once('=').expect("ENV KEY=VALUE");
            env.push((k.trim().into(), v.trim().into()));
        }
    }
    let (_, taskdef) = taskdef(&t, "worker");
    let containers = taskdef["Properties"]["ContainerDefinitions"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    let c = &containers[0];
    for e in c["Environment"].as_array().expect("Environment") {
        env.push((
            e["Name"].as_str().expect("Name").to_string(),
            resolve(&t, &e["Value"]),
        ));
    }
    let config = mediaflow::config::Config::from_sources(None, &env).unwrap_or_else(|e| {
        panic!("the task's environment is refused by the engine: {e}\n{env:?}")
    });
    let w = &config.worker;
    assert!(w.queue_url.is_some(), "the task consumes SQS: {env:?}");
    assert!(
        matches!(
            config.notify.sinks.get(&config.notify.default_sink),
            Some(mediaflow::config::SinkConfig::Sns(s)) if s.topic_arn.ends_with(":NotificationsTopic")
        ),
        "job events go to the stack's notifications topic: {:?}",
        config.notify
    );
    assert_eq!(w.output_bucket, "mediaflow-output-000000000000-eu-west-1");
    assert_eq!(
        config.api.job_retention_days, 90,
        "finished records the worker writes carry the table's TTL attribute"
    );
    assert_eq!(w.source_bucket, "mediaflow-source-000000000000-eu-west-1");
    assert_eq!(
        config.plugins.cache_dir.as_deref(),
        Some(Path::new("/var/cache/mediaflow/plugins")),
        "the compiled-plugin cache is on the image's volume"
    );
    assert!(
        read("deploy/Dockerfile").contains("VOLUME [\"/var/cache/mediaflow\"]"),
        "the cache directory is a volume"
    );
    assert!(
        c["MountPoints"].as_array().is_some_and(|m| m
            .iter()
            .any(|m| m["ContainerPath"] == "/var/cache/mediaflow")),
        "the task mounts a volume at the image's VOLUME path (ECS copies the image's contents in)"
    );

    let (queue_id, queue) = only(&t, "AWS::SQS::Queue", |r| {
        r["Properties"].get("RedrivePolicy").is_some()
    });
    let q = &queue["Properties"];
    let number = |v: &Value| -> u64 {
        resolve(&t, v)
            .parse()
            .unwrap_or_else(|e| panic!("{v} is not a number: {e}"))
    };
    assert!(
        number(&q["VisibilityTimeout"]) >= w.visibility_timeout_secs,
        "{queue_id}'s VisibilityTimeout is below worker.visibility_timeout_secs"
    );
    assert_eq!(
        number(&q["RedrivePolicy"]["maxReceiveCount"]),
        u64::from(w.max_receive_count),
        "{queue_id}'s maxReceiveCount is worker.max_receive_count"
    );
    let mut dlq = BTreeSet::new();
    references(&q["RedrivePolicy"]["deadLetterTargetArn"], &mut dlq);
    let dlq = dlq.into_iter().next().expect("dead-letter queue");
    assert!(
        number(&t["Resources"][&dlq]["Properties"]["MessageRetentionPeriod"])
            > number(&q["MessageRetentionPeriod"]),
        "{dlq} keeps messages longer than {queue_id}, so a redriven message is not lost"
    );
    let stop = c["StopTimeout"].as_u64().expect("StopTimeout");
    assert_eq!(stop, 120, "stopTimeout");
    assert!(
        w.drain_timeout_secs + 10 <= stop,
        "the worker's drain ({} s) ends well inside stopTimeout ({stop} s)",
        w.drain_timeout_secs
    );
}

#[test]
fn image_builds_with_the_pinned_toolchain_and_runs_the_worker_unprivileged() {
    let dockerfile = read("deploy/Dockerfile");
    let toolchain = read("rust-toolchain.toml");
    let channel = toolchain
        .lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .expect("channel in rust-toolchain.toml")
        .trim_matches('"');
    assert!(
        dockerfile.contains(&format!("ARG RUST_VERSION={channel}\n")),
        "deploy/Dockerfile builds with rust {channel} (rust-toolchain.toml)"
    );
    for needed in [
        "cargo build --release --locked -p mediaflow",
        "rustup target add wasm32-wasip2",
        "FROM debian:bookworm-slim",
        "COPY --chmod=0755 deploy/healthcheck.sh /usr/local/bin/mediaflow-healthcheck",
        "STOPSIGNAL SIGTERM",
        "ENTRYPOINT [\"mediaflow\"]",
        "CMD [\"worker\"]",
        // FFmpeg is built from source: bindgen needs libclang, AV1 needs libdav1d to decode
        // and SVT-AV1 to encode.
        "libclang-dev",
        "libdav1d-dev",
        "libdav1d6",
        "libsvtav1enc-dev",
        "libsvtav1enc1",
        // The binary's line tables are most of its size: the image carries it without them.
        "strip --strip-debug /out/mediaflow",
    ] {
        assert!(dockerfile.contains(needed), "deploy/Dockerfile: {needed}");
    }
    // Nothing GPL in the image: Debian's FFmpeg and libheif are GPL builds.
    let runtime = dockerfile
        .split("FROM debian:bookworm-slim")
        .nth(1)
        .expect("a runtime stage");
    for gpl in ["ffmpeg", "libav", "libheif", "x264", "x265"] {
        assert!(!runtime.contains(gpl), "the runtime image installs {gpl}");
    }
    let user = dockerfile
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER");
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    assert!(root().join("deploy/healthcheck.sh").exists() && root().join(".dockerignore").exists());
    let ignore = read(".dockerignore");
    assert!(
        ignore.lines().any(|l| l == "target/"),
        ".dockerignore: target/"
    );
}

#[test]
fn ops_listener_port_is_the_same_in_engine_health_check_image_and_task() {
    let port = mediaflow::config::OpsConfig::default().listen.port();
    let script = read("deploy/healthcheck.sh");
    assert!(
        script.contains(&format!("${{MEDIAFLOW_OPS__LISTEN:-0.0.0.0:{port}}}")),
        "deploy/healthcheck.sh defaults to the engine's ops port {port}"
    );
    assert!(
        read("deploy/Dockerfile").contains(&format!("\nEXPOSE {port}\n")),
        "deploy/Dockerfile exposes the ops port {port}"
    );
    let t = template();
    let (_, taskdef) = taskdef(&t, "worker");
    let c = &taskdef["Properties"]["ContainerDefinitions"][0];
    let mapped: Vec<u64> = c["PortMappings"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|p| p["ContainerPort"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(mapped, vec![u64::from(port)], "the task maps the ops port");
    assert!(
        c["Environment"]
            .as_array()
            .is_some_and(|e| e.iter().all(|e| e["Name"] != "MEDIAFLOW_OPS__LISTEN")),
        "the task keeps the default listener, which its health check probes"
    );
    assert_eq!(
        c["HealthCheck"]["Command"],
        serde_json::json!(["CMD", "/usr/local/bin/mediaflow-healthcheck"])
    );
}

/// Serve one canned HTTP response per connection on a free port; returns the port and the
/// request lines seen.
fn serve(response: &'static str) -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { break };
            // Read the request head, as an HTTP server does, then answer.
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let request = String::from_utf8_lossy(&head);
            let _ = tx.send(request.lines().next().unwrap_or_default().to_string());
            let _ = s.write_all(response.as_bytes());
        }
    });
    (port, rx)
}

fn healthcheck(port: u16) -> bool {
    Command::new("bash")
        .arg(root().join("deploy/healthcheck.sh"))
        .env("MEDIAFLOW_OPS__LISTEN", format!("0.0.0.0:{port}"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("bash")
        .success()
}

#[test]
fn healthcheck_script_passes_only_on_http_200_from_healthz() {
    let (port, requests) = serve("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert!(healthcheck(port), "200 is healthy");
    assert_eq!(requests.recv().expect("a request"), "GET /healthz HTTP/1.0");
    let (port, _) = serve("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    assert!(!healthcheck(port), "503 is unhealthy");
    let (port, _) = serve("HTTP/1.1 2000 OK\r\n\r\n");
    assert!(!healthcheck(port), "only exactly 200");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port(); // dropped: nothing listens there now
    assert!(!healthcheck(closed), "no listener is unhealthy");
}

#[test]
fn the_dashboard_plots_the_job_metrics_the_workers_write_and_every_alarm() {
    let t = template();
    let (_, dash) = only(&t, "AWS::CloudWatch::Dashboard", |_| true);
    let text = resolve(&t, &dash["Properties"]["DashboardBody"]);
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the dashboard body is not JSON once resolved: {e}\n{text}"));
    // The namespace the task's workers write their EMF lines under.
    let (_, taskdef) = taskdef(&t, "worker");
    let namespace = taskdef["Properties"]["ContainerDefinitions"][0]["Environment"]
        .as_array()
        .expect("Environment")
        .iter()
        .find(|e| e["Name"] == "MEDIAFLOW_OPS__EMF_NAMESPACE")
        .map(|e| resolve(&t, &e["Value"]))
        .expect("the task writes EMF job metrics (MEDIAFLOW_OPS__EMF_NAMESPACE)");
    use mediaflow::telemetry::emf::{DIMENSION_SETS, METRICS};
    let widgets = body["widgets"].as_array().expect("widgets");
    let mut plotted = BTreeSet::new();
    for w in widgets {
        for m in w["properties"]["metrics"].as_array().into_iter().flatten() {
            let m = m.as_array().expect("a metric row");
            if m[0] != namespace.as_str() {
                continue;
            }
            let name = m[1].as_str().expect("metric name");
            assert!(
                METRICS.iter().any(|(n, _)| *n == name),
                "the dashboard plots {name}, which the workers do not write"
            );
            let mut dims: Vec<&str> = m[2..].iter().filter_map(Value::as_str).step_by(2).collect();
            dims.sort_unstable();
            assert!(
                DIMENSION_SETS.iter().any(|set| {
                    let mut set = set.to_vec();
                    set.sort_unstable();
                    set == dims
                }),
                "{name} by {dims:?}: not a dimension set the workers write ({DIMENSION_SETS:?})"
            );
            plotted.insert(name.to_string());
        }
    }
    for (name, _) in METRICS {
        assert!(plotted.contains(*name), "the dashboard plots {name}");
    }
    // The alarm widget shows every alarm of the stack that tells an operator something (the
    // scale-from/to-zero alarms only drive scaling policies).
    let alarms: BTreeSet<String> = resources(&t)
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .filter(|(_, r)| {
            let mut targets = BTreeSet::new();
            references(&r["Properties"]["AlarmActions"], &mut targets);
            !targets
                .iter()
                .all(|a| t["Resources"][a]["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy")
        })
        .map(|(id, _)| format!("{id}.Arn"))
        .collect();
    assert!(alarms.contains("Api5xxAlarm.Arn"), "{alarms:?}");
    let shown: BTreeSet<String> = widgets
        .iter()
        .filter(|w| w["type"] == "alarm")
        .flat_map(|w| strings(&w["properties"]["alarms"]))
        .collect();
    assert_eq!(shown, alarms, "the dashboard's alarm widget");
}

/// The API task's environment, as the engine reads it (image ENV first).
fn api_config(t: &Value) -> mediaflow::config::Config {
    let mut env: Vec<(String, String)> = Vec::new();
    for line in read("deploy/Dockerfile").lines() {
        if let Some(rest) = line.strip_prefix("ENV ") {
            let (k, v) = rest.split_once('=').expect("ENV KEY=VALUE");
            env.push((k.trim().into(), v.trim().into()));
        }
    }
    let (_, api) = taskdef(t, "serve");
    let c = &api["Properties"]["ContainerDefinitions"][0];
    assert_eq!(c["Command"], serde_json::json!(["serve", "--no-worker"]));
    for e in c["Environment"].as_array().expect("Environment") {
        env.push((
            e["Name"].as_str().expect("Name").to_string(),
            resolve(t, &e["Value"]),
        ));
    }
    mediaflow::config::Config::from_sources(None, &env).unwrap_or_else(|e| {
        panic!("the API task's environment is refused by the engine: {e}\n{env:?}")
    })
}

#[test]
fn api_service_runs_serve_with_its_key_the_table_and_cloudfront_urls() {
    let t = template();
    let config = api_config(&t);
    let api = &config.api;
    assert_eq!(api.index_table.as_deref(), Some("jobtable"), "{api:?}");
    assert!(
        !api.listen.ip().is_loopback(),
        "the load balancer reaches it"
    );
    assert_eq!(api.keys.len(), 1, "the deployment's key: {api:?}");
    assert_eq!(api.keys[0].sha256, STAND_INS[0].1);
    assert_eq!(api.keys[0].scopes, ["read", "write"]);
    let cdn = "https://Distribution.DomainName";
    assert_eq!(api.public_url.as_deref(), Some(cdn));
    assert_eq!(api.outputs_base_url.as_deref(), Some(cdn));
    assert_eq!(api.job_retention_days, 90);
    // Uploads land where the queue's notification and the API role's grant look.
    let prefix = resolve(&t, &t["Parameters"]["SourceKeyPrefix"]["Default"]);
    assert!(api.upload_prefix.starts_with(&prefix));
    let (_, statements) = task_role_statements(&t, "serve");
    let puts: Vec<String> = statements
        .iter()
        .filter(|s| strings(&s["Action"]).iter().any(|a| a == "s3:PutObject"))
        .map(|s| resolve(&t, &s["Resource"]))
        .collect();
    assert_eq!(
        puts,
        [format!(
            "arn:aws:s3:::{}/{}*",
            config.worker.source_bucket, api.upload_prefix
        )],
        "the API presigns uploads under its upload prefix only"
    );
    // The worker keeps records the same time (its TTL attribute is the table's).
    let (_, table) = only(&t, "AWS::DynamoDB::Table", |_| true);
    assert_eq!(
        table["Properties"]["TimeToLiveSpecification"],
        serde_json::json!({"AttributeName": "expires_at", "Enabled": true})
    );
    let (_, service) = only(&t, "AWS::ECS::Service", |r| {
        r["Properties"].get("LoadBalancers").is_some()
    });
    let mut refs = BTreeSet::new();
    references(&service["Properties"]["LoadBalancers"], &mut refs);
    assert!(refs.contains("ApiTargetGroup"), "{refs:?}");
    let (_, tg) = only(&t, "AWS::ElasticLoadBalancingV2::TargetGroup", |_| true);
    assert_eq!(tg["Properties"]["Port"], api.listen.port());
    assert_eq!(tg["Properties"]["HealthCheckPath"], "/healthz");
}

#[test]
fn cloudfront_serves_page_api_and_private_outputs_from_one_domain() {
    let t = template();
    let (_, dist) = only(&t, "AWS::CloudFront::Distribution", |_| true);
    let d = &dist["Properties"]["DistributionConfig"];
    let origin = |id: &str| -> &Value {
        d["Origins"]
            .as_array()
            .expect("Origins")
            .iter()
            .find(|o| o["Id"] == id)
            .unwrap_or_else(|| panic!("origin {id}"))
    };
    // The page and the API: the default behaviour, never cached, Authorization passed.
    assert_eq!(d["DefaultCacheBehavior"]["TargetOriginId"], "api");
    assert_eq!(
        d["DefaultCacheBehavior"]["CachePolicyId"], "4135ea2d-6df8-44a3-9df3-4b5a84be39ad",
        "CachingDisabled"
    );
    assert!(strings(&d["DefaultCacheBehavior"]["AllowedMethods"]).contains(&"POST".to_string()));
    // Outputs: the output prefix from the private bucket through origin access control.
    let outputs = d["CacheBehaviors"]
        .as_array()
        .expect("CacheBehaviors")
        .iter()
        .find(|b| b["TargetOriginId"] == "outputs")
        .expect("an outputs behaviour");
    let prefix = resolve(&t, &t["Parameters"]["OutputKeyPrefix"]["Default"]);
    assert_eq!(resolve(&t, &outputs["PathPattern"]), format!("{prefix}*"));
    let o = origin("outputs");
    assert!(o.get("OriginAccessControlId").is_some(), "{o}");
    let (_, bucket) = only(&t, "AWS::S3::Bucket", |r| {
        r["Properties"]["BucketName"]
            .to_string()
            .contains("-output-")
    });
    assert_eq!(
        bucket["Properties"]["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"], true,
        "the output bucket stays private"
    );
    let (_, policy) = only(&t, "AWS::S3::BucketPolicy", |r| {
        r["Properties"]["Bucket"] == serde_json::json!({"Ref": "OutputBucket"})
    });
    let grant = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .expect("Statement")
        .iter()
        .find(|s| s["Principal"]["Service"] == "cloudfront.amazonaws.com")
        .expect("CloudFront may read the outputs");
    assert_eq!(grant["Action"], "s3:GetObject");
    assert!(
        resolve(&t, &grant["Condition"]["StringEquals"]["AWS:SourceArn"])
            .ends_with(":distribution/distribution"),
        "only this distribution: {grant}"
    );
    assert!(resolve(&t, &grant["Resource"]).ends_with(&format!("/{prefix}*")));
    // The load balancer forwards only what carries CloudFront's origin header.
    let header = &origin("api")["OriginCustomHeaders"][0];
    let (_, rule) = only(&t, "AWS::ElasticLoadBalancingV2::ListenerRule", |_| true);
    let cond = &rule["Properties"]["Conditions"][0]["HttpHeaderConfig"];
    assert_eq!(cond["HttpHeaderName"], header["HeaderName"]);
    assert_eq!(cond["Values"][0], header["HeaderValue"]);
    let (_, listener) = only(&t, "AWS::ElasticLoadBalancingV2::Listener", |_| true);
    assert_eq!(
        listener["Properties"]["DefaultActions"][0]["FixedResponseConfig"]["StatusCode"],
        "403"
    );
    // Browsers PUT uploads to the source bucket from the page's origin and read ETags.
    let (_, source) = only(&t, "AWS::S3::Bucket", |r| {
        r["Properties"]["BucketName"]
            .to_string()
            .contains("-source-")
    });
    let cors = &source["Properties"]["CorsConfiguration"]["CorsRules"][0];
    assert_eq!(strings(&cors["AllowedMethods"]), ["PUT"]);
    assert_eq!(strings(&cors["ExposedHeaders"]), ["ETag"]);
    assert_eq!(
        resolve(&t, &cors["AllowedOrigins"][0]),
        "https://Distribution.DomainName"
    );
}

#[test]
fn workers_scale_to_zero_when_idle_and_back_when_a_job_waits() {
    let t = template();
    assert_eq!(t["Parameters"]["MinTasks"]["MinValue"], 0);
    let (_, target) = only(&t, "AWS::ApplicationAutoScaling::ScalableTarget", |_| true);
    assert_eq!(
        target["Properties"]["MinCapacity"],
        serde_json::json!({"Ref": "MinTasks"})
    );
    // alarm → policy → the exact count it sets.
    let step = |alarm: &str| -> (i64, &Value) {
        let a = &t["Resources"][alarm];
        assert_eq!(
            a["Condition"], "ScalesToZero",
            "{alarm} only with MinTasks 0"
        );
        let mut targets = BTreeSet::new();
        references(&a["Properties"]["AlarmActions"], &mut targets);
        let policy = targets.into_iter().next().expect("a policy");
        let p = &t["Resources"][&policy]["Properties"]["StepScalingPolicyConfiguration"];
        assert_eq!(p["AdjustmentType"], "ExactCapacity", "{policy}");
        (
            p["StepAdjustments"][0]["ScalingAdjustment"]
                .as_i64()
                .expect("adjustment"),
            &a["Properties"],
        )
    };
    let (up, waiting) = step("JobWaitingWithNoTaskAlarm");
    assert_eq!(up, 1, "a waiting job with no task starts one");
    let expr = waiting["Metrics"].to_string();
    assert!(
        expr.contains("ApproximateNumberOfMessagesVisible") && expr.contains("RunningTaskCount"),
        "{expr}"
    );
    let (down, idle) = step("IdleAlarm");
    assert_eq!(down, 0, "idle: to zero");
    assert_eq!(
        idle["EvaluationPeriods"],
        serde_json::json!({"Ref": "IdleMinutesBeforeZero"})
    );
    let m = idle["Metrics"].to_string();
    assert!(
        m.contains("ApproximateNumberOfMessagesVisible")
            && m.contains("ApproximateNumberOfMessagesNotVisible"),
        "idle means nothing waiting and nothing in flight: {m}"
    );
    // Target tracking never asks for zero while a job waits or runs.
    let (_, tt) = only(&t, "AWS::ApplicationAutoScaling::ScalingPolicy", |r| {
        r["Properties"]["PolicyType"] == "TargetTrackingScaling"
    });
    let metrics = &tt["Properties"]["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]
        ["Metrics"];
    let returned: Vec<&Value> = metrics
        .as_array()
        .expect("Metrics")
        .iter()
        .filter(|m| m["ReturnData"] == true)
        .collect();
    assert_eq!(returned.len(), 1);
    let e = returned[0]["Expression"].as_str().expect("expression");
    assert!(
        e.starts_with("MAX([per_task,") && e.contains("in_flight"),
        "{e}"
    );
}
