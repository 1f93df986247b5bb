use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    settings: SettingsArgs,
}

fn args(argv: &[&str]) -> SettingsArgs {
    let mut full = vec!["test"];
    full.extend_from_slice(argv);
    Cli::try_parse_from(full).unwrap().settings
}

/// Figment reads the real process environment; tests that set variables use `figment::Jail`
/// so they neither leak into nor race with each other.
#[allow(clippy::result_large_err)] // figment's own Jail signature
pub(crate) fn with_env<R>(vars: &[(&str, &str)], f: impl FnOnce() -> R) -> R {
    let mut out = None;
    figment::Jail::expect_with(|jail| {
        for name in ENV_NAMES {
            std::env::remove_var(name);
        }
        std::env::remove_var("WACENTER_CONFIG");
        for (k, v) in vars {
            jail.set_env(k, v);
        }
        out = Some(f());
        Ok(())
    });
    out.unwrap()
}

#[test]
fn defaults_are_the_seed_defaults() {
    let s = with_env(&[], || {
        load_unvalidated(&SettingsArgs::default(), None).unwrap()
    });
    assert!(s.otomax_enabled);
    assert_eq!(s.otomax_api_url, "http://127.0.0.1:5000/");
    assert_eq!(s.otomax_default_kode_terminal, 1);
    assert!(
        s.otomax_forward_incoming
            && !s.otomax_forward_outgoing
            && !s.otomax_forward_groups
            && !s.otomax_forward_media
    );
    assert!(s.otomax_auto_reply_enabled);
    assert_eq!(s.otomax_exp_seconds, 30);
    assert_eq!(s.otomax_max_retries, 3);
    assert_eq!(s.nats_url, "nats://127.0.0.1:4222");
    assert_eq!(
        (s.ingress_port, s.forwarder_port, s.reply_port, s.app_port),
        (3001, 9091, 9092, 3000)
    );
    assert_eq!(s.wa_provider, WaProvider::Gowa);
}

#[test]
fn layers_file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wacenter.toml");
    std::fs::write(&file, "otomax_app_id = \"from-file\"\notomax_default_reseller = \"FILE\"\notomax_exp_seconds = 10\n").unwrap();
    let s = with_env(
        &[
            ("OTOMAX_DEFAULT_RESELLER", "ENV"),
            ("OTOMAX_APP_KEY", "12345"),
            ("OTOMAX_FORWARD_GROUPS", "true"),
        ],
        || {
            load_unvalidated(
                &args(&["--otomax-exp-seconds", "45", "--otomax-forward-media"]),
                Some(&file),
            )
            .unwrap()
        },
    );
    assert_eq!(s.otomax_app_id, "from-file");
    assert_eq!(s.otomax_default_reseller, "ENV");
    assert_eq!(
        s.otomax_app_key.expose(),
        "12345",
        "a numeric key is still text"
    );
    assert_eq!(s.otomax_exp_seconds, 45);
    assert!(s.otomax_forward_groups);
    assert!(s.otomax_forward_media);
}

#[test]
fn numeric_text_settings_from_env() {
    let s = with_env(
        &[
            ("OTOMAX_APP_ID", "777"),
            ("OTOMAX_DEFAULT_RESELLER", "0012"),
            ("GOWA_DEVICE_ID", "628111"),
        ],
        || load_unvalidated(&SettingsArgs::default(), None).unwrap(),
    );
    assert_eq!(s.otomax_app_id, "777");
    assert_eq!(s.otomax_default_reseller, "0012", "leading zeros are kept");
    assert_eq!(s.gowa_device_id, "628111");
}

#[test]
fn seed_flag_forms() {
    let a = args(&[
        "--otomax-enabled=false",
        "--otomax-api-url=https://api.example",
        "--debug",
    ]);
    assert_eq!(a.otomax_enabled, Some(false));
    assert_eq!(a.debug, Some(true));
    assert_eq!(a.otomax_api_url.as_deref(), Some("https://api.example"));
}

#[test]
fn bad_values_name_the_setting() {
    let e = with_env(&[("OTOMAX_ENABLED", "maybe")], || {
        load_unvalidated(&SettingsArgs::default(), None).unwrap_err()
    });
    assert_eq!(e.setting, "OTOMAX_ENABLED", "{e}");
    let e = with_env(&[("APP_PORT", "70000")], || {
        load_unvalidated(&SettingsArgs::default(), None).unwrap_err()
    });
    assert_eq!(e.setting, "APP_PORT", "{e}");
    let e = with_env(&[("WA_PROVIDER", "telegram")], || {
        load_unvalidated(&SettingsArgs::default(), None).unwrap_err()
    });
    assert_eq!(e.setting, "WA_PROVIDER", "{e}");
    let e = with_env(&[("OTOMAX_API_URL", "not a url")], || {
        load(&SettingsArgs::default(), None, Role::OtomaxTool).unwrap_err()
    });
    assert_eq!(e.setting, "OTOMAX_API_URL", "{e}");
    let creds = [
        ("OTOMAX_APP_ID", "a"),
        ("OTOMAX_APP_KEY", "k"),
        ("OTOMAX_DEV_KEY", "d"),
    ];
    let e = with_env(
        &[creds[0], creds[1], creds[2], ("OTOMAX_EXP_SECONDS", "7200")],
        || load(&SettingsArgs::default(), None, Role::OtomaxTool).unwrap_err(),
    );
    assert_eq!(e.setting, "OTOMAX_EXP_SECONDS", "{e}");
    assert!(e.to_string().contains("3000 or less"), "{e}");
    let e = with_env(&[], || {
        load_unvalidated(
            &SettingsArgs::default(),
            Some(std::path::Path::new("/nonexistent.toml")),
        )
        .unwrap_err()
    });
    assert!(e.to_string().contains("/nonexistent.toml"), "{e}");
}

#[test]
fn missing_secrets_are_named_per_role() {
    let e = with_env(&[], || {
        load(&SettingsArgs::default(), None, Role::OtomaxTool).unwrap_err()
    });
    assert_eq!(e.setting, "OTOMAX_APP_ID");
    let e = with_env(&[("OTOMAX_ENABLED", "false")], || {
        load(&SettingsArgs::default(), None, Role::Callback).unwrap_err()
    });
    assert_eq!(e.setting, "OTOMAX_CALLBACK_SECRET");
    let e = with_env(&[], || {
        load(&SettingsArgs::default(), None, Role::Ingress).unwrap_err()
    });
    assert_eq!(e.setting, "WA_WEBHOOK_SECRET");
    let e = with_env(
        &[("WA_PROVIDER", "meta"), ("OTOMAX_OUTBOX_ACK", "false")],
        || load(&SettingsArgs::default(), None, Role::Reply).unwrap_err(),
    );
    assert_eq!(e.setting, "META_ACCESS_TOKEN");
}

#[test]
fn secrets_never_echoed() {
    let e = with_env(&[("OTOMAX_APP_KEY", "[unbalanced")], || {
        load_unvalidated(&SettingsArgs::default(), None)
    });
    if let Err(e) = e {
        assert!(!e.to_string().contains("unbalanced"), "{e}");
    }
    let s = with_env(
        &[
            ("OTOMAX_APP_KEY", "topsecret"),
            ("APP_BASIC_AUTH", "a:hunter2"),
        ],
        || load_unvalidated(&SettingsArgs::default(), None).unwrap(),
    );
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("topsecret") && !shown.contains("hunter2"),
        "{shown}"
    );
}

#[test]
fn basic_auth_and_allow_list_parsing() {
    let mut s = Settings {
        app_basic_auth: Secret::new("admin:a:b, ops:x"),
        ..Settings::default()
    };
    let users: Vec<(String, String)> = s
        .basic_auth_users()
        .unwrap()
        .into_iter()
        .map(|c| (c.user, c.password.expose().to_string()))
        .collect();
    assert_eq!(
        users,
        vec![("admin".into(), "a:b".into()), ("ops".into(), "x".into())]
    );
    s.app_basic_auth = Secret::new("nopassword");
    assert_eq!(s.basic_auth_users().unwrap_err().setting, "APP_BASIC_AUTH");
    s.otomax_callback_allow_ips = "10.0.0.0/8, 192.168.1.7, ::1".into();
    let nets = s.callback_allow_list().unwrap();
    assert!(nets[0].contains("10.2.3.4".parse().unwrap()));
    assert!(!nets[0].contains("11.0.0.1".parse().unwrap()));
    assert!(nets[1].contains("192.168.1.7".parse().unwrap()));
    assert!(
        nets[0].contains("::ffff:10.0.0.1".parse().unwrap()),
        "v4-mapped v6 is the v4 address"
    );
    assert!(nets[2].contains("::1".parse().unwrap()));
    s.otomax_callback_allow_ips = "10.0.0.0/33".into();
    assert!(s.callback_allow_list().is_err());
}

/// Every setting's real default, as text (`""` for an empty one), by environment name.
fn real_defaults() -> std::collections::BTreeMap<String, String> {
    Settings::default().to_env().into_iter().collect()
}

#[test]
fn help_states_the_real_defaults() {
    let real = real_defaults();
    assert_eq!(real.len(), crate::DOCUMENTED_DEFAULTS.len());
    for (env, documented) in crate::DOCUMENTED_DEFAULTS {
        assert_eq!(
            real.get(*env).map(String::as_str),
            Some(*documented),
            "--help states {env}'s default as {documented:?}"
        );
    }
}

#[test]
fn the_readme_states_every_setting_with_its_real_default() {
    let readme = include_str!("../../../README.md");
    let mut documented = std::collections::BTreeMap::new();
    for line in readme.lines() {
        // | `NAME` (`--flag`) | default | meaning |
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with("`") {
            continue;
        }
        let name = cells[1].trim_start_matches('`');
        let Some((name, _)) = name.split_once('`') else {
            continue;
        };
        if !crate::ENV_NAMES.contains(&name) {
            continue;
        }
        let default = match cells[2] {
            "—" => String::new(),
            d => d.trim_matches('`').to_string(),
        };
        assert!(
            documented.insert(name.to_string(), default).is_none(),
            "README.md lists {name} twice"
        );
    }
    let real = real_defaults();
    for env in crate::ENV_NAMES {
        let Some(doc) = documented.get(*env) else {
            panic!("README.md's settings table has no row for {env}");
        };
        assert_eq!(
            doc, &real[*env],
            "README.md states {env}'s default as {doc:?}"
        );
    }
}
