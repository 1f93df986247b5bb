//! The deployment files against the settings table: every environment name they set is a real
//! setting, `.env.example` lists every setting with its real default, and secrets stay out of
//! the ConfigMap. (Kubernetes objects themselves are rendered and validated by `kubectl
//! kustomize` and kubernetes-validate in `scripts/lib/deploy_checks.sh`.)

use std::collections::BTreeMap;

use crate::settings::SECRET_SETTINGS;
use crate::{Settings, ENV_NAMES};

/// Read by the services but not settings of the table.
const EXTRA_ENV: &[&str] = &["RUST_LOG", "WACENTER_CONFIG"];

/// Set in `.env.example` for docker compose's other containers, not for wacenter.
const COMPOSE_ONLY_ENV: &[&str] = &["GRAFANA_ADMIN_PASSWORD"];

/// `.env.example` values that differ from the default on purpose: the demo's App ID, which
/// `scripts/dev`, the README, the Kubernetes ConfigMap and the compose simulator all use, so the
/// demo works as shipped.
const ENV_EXAMPLE_OVERRIDES: &[(&str, &str)] = &[("OTOMAX_APP_ID", "OtomaX.Addon")];

fn root_file(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn is_known(name: &str) -> bool {
    ENV_NAMES.contains(&name) || EXTRA_ENV.contains(&name)
}

fn is_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn defaults() -> BTreeMap<String, String> {
    Settings::default().to_env().into_iter().collect()
}

#[test]
fn env_example_lists_every_setting_with_its_default() {
    let defaults = defaults();
    let mut listed = BTreeMap::new();
    let env_example = root_file(".env.example");
    for (n, line) in env_example.lines().enumerate() {
        let (commented, assignment) = match line.strip_prefix("# ") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let Some((name, value)) = assignment.split_once('=') else {
            continue;
        };
        if !is_env_name(name) {
            continue;
        }
        let at = format!(".env.example line {}: {name}", n + 1);
        assert!(
            is_known(name) || COMPOSE_ONLY_ENV.contains(&name),
            "{at} is not a wacenter setting (typo?)"
        );
        assert!(listed.insert(name, ()).is_none(), "{at} is listed twice");
        if !ENV_NAMES.contains(&name) {
            continue;
        }
        if SECRET_SETTINGS.contains(&name) {
            assert!(
                commented || value.is_empty() || value.contains("change-me"),
                "{at}: a secret's example value must be empty or say change-me"
            );
            continue;
        }
        if commented && value.is_empty() {
            continue;
        }
        let expected = ENV_EXAMPLE_OVERRIDES
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(defaults[name].as_str(), |(_, v)| *v);
        assert_eq!(value, expected, "{at}: not the built-in default");
    }
    for name in ENV_NAMES {
        assert!(
            listed.contains_key(name),
            ".env.example does not list {name}"
        );
    }
}

/// Keys of the YAML mappings named `block:` (at any indentation), read line by line: every
/// deeper-indented `KEY:` line (or `# KEY:` line, documented but unset) until the indentation
/// falls back.
fn mapping_keys(yaml: &str, block: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut inside: Option<usize> = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(base) = inside {
            if indent <= base && !trimmed.starts_with('#') {
                inside = None;
            } else {
                // A commented-out entry has a quoted value; other comments are prose.
                let (key, commented) = match trimmed.strip_prefix("# ") {
                    Some(rest) => (rest, true),
                    None => (trimmed, false),
                };
                if let Some((name, value)) = key.split_once(':') {
                    if is_env_name(name) && (!commented || value.trim_start().starts_with('"')) {
                        keys.push(name.to_string());
                    }
                }
                continue;
            }
        }
        if trimmed == format!("{block}:") || trimmed.starts_with(&format!("{block}: &")) {
            inside = Some(indent);
        }
    }
    keys
}

#[test]
fn compose_sets_only_real_settings() {
    let compose = root_file("docker-compose.yml");
    let shared = mapping_keys(&compose, "x-wacenter-env");
    assert!(shared.contains(&"NATS_URL".to_string()), "{shared:?}");
    // The environment of wacenter's own containers (those built from this repository).
    let mut checked = shared.len();
    for service in compose
        .split("\n  ")
        .filter(|s| s.contains("image: wacenter:") || s.contains("<<: *wacenter\n"))
    {
        for key in mapping_keys(&format!("  {service}"), "environment") {
            assert!(
                is_known(&key),
                "docker-compose.yml sets {key}, which is not a wacenter setting"
            );
            checked += 1;
        }
    }
    for key in &shared {
        assert!(
            is_known(key),
            "docker-compose.yml sets {key}, which is not a wacenter setting"
        );
    }
    assert!(
        checked >= 4,
        "no wacenter environment found in docker-compose.yml"
    );
}

#[test]
fn kubernetes_config_and_secret_hold_only_real_settings_in_their_place() {
    let config_files = [
        "deploy/k8s/base/configmap.yaml",
        "deploy/k8s/overlays/example/config.patch.yaml",
    ];
    let mut config_keys = 0;
    for file in config_files {
        for key in mapping_keys(&root_file(file), "data") {
            assert!(is_known(&key), "{file}: {key} is not a wacenter setting");
            assert!(
                !SECRET_SETTINGS.contains(&key.as_str()),
                "{file}: {key} is a secret: put it in the Secret wacenter-secrets"
            );
            config_keys += 1;
        }
    }
    assert!(config_keys > 20, "the ConfigMap's settings were not found");
    let secret = "deploy/k8s/base/secret.example.yaml";
    let secret_keys = mapping_keys(&root_file(secret), "stringData");
    assert!(secret_keys.len() >= 5, "{secret}: no settings found");
    for key in secret_keys {
        assert!(is_known(&key), "{secret}: {key} is not a wacenter setting");
    }
}
