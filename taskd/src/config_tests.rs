//! Tests of the configuration: defaults, precedence, and the messages of bad settings.

use super::*;

#[test]
fn no_file_gives_working_defaults() {
    let s = FileConfig::default().resolve(Overrides::default()).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(
        s.store,
        StoreSetting::Sled {
            dir: PathBuf::from("./data")
        }
    );
    assert_eq!(s.media_root, PathBuf::from("./media"));
    assert!(s.dev_key);
    assert_eq!(s.api_keys[0].1.as_str(), DEV_TENANT);
    assert_eq!(s.products.len(), 1);
    assert_eq!(s.products[0].name.as_str(), "adbreaks");
    assert_eq!(s.retention, None, "finished tasks are kept unless asked");
    assert_eq!(s.scratch_dir, None, "downloads go to the system's temp dir");
}

#[test]
fn flags_override_the_file() {
    let file = FileConfig::parse(
        r#"
        listen = "127.0.0.1:9000"
        data_dir = "/var/lib/taskd"
        retention_days = 30
        scratch_dir = "/srv/scratch"
        [[api_keys]]
        key = "file-key-123"
        tenant = "acme"
        [products.adbreaks]
        min_duration_secs = 600
        versions = ["1.0"]
        [products.markers]
        "#,
    )
    .unwrap();
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        api_keys: vec!["flag-key-456=globex".into()],
        products: vec!["adbreaks".into()],
        ..Overrides::default()
    };
    let s = file.resolve(overrides).unwrap();
    assert_eq!(s.listen.port(), 0);
    assert_eq!(
        s.store,
        StoreSetting::Sled {
            dir: PathBuf::from("/var/lib/taskd")
        }
    );
    assert_eq!(s.retention, Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(s.scratch_dir, Some(PathBuf::from("/srv/scratch")));
    assert_eq!(s.api_keys.len(), 1);
    assert_eq!(s.api_keys[0].1.as_str(), "globex");
    assert!(!s.dev_key);
    assert_eq!(s.products.len(), 1);
    assert_eq!(
        s.products[0].settings.min_duration,
        Duration::from_secs(600)
    );
    assert_eq!(s.products[0].versions.as_ref().unwrap()[0].as_str(), "1.0");
}

#[test]
fn bad_settings_are_named() {
    let err = FileConfig::parse("listen = 5").unwrap_err();
    assert!(err.contains("listen"), "{err}");
    let err = FileConfig::parse("unknown = 1").unwrap_err();
    assert!(err.contains("unknown"), "{err}");
    let open = Overrides {
        listen: Some("0.0.0.0:8080".into()),
        ..Overrides::default()
    };
    let err = FileConfig::default().resolve(open).unwrap_err();
    assert!(err.to_string().contains("api_keys"), "{err}");
    let short = Overrides {
        api_keys: vec!["abc=acme".into()],
        ..Overrides::default()
    };
    assert!(FileConfig::default().resolve(short).is_err());
    let none = FileConfig::parse("retention_days = 0").unwrap();
    let err = none.resolve(Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("retention_days"), "{err}");
}

#[test]
fn retry_settings_are_per_product_and_checked() {
    let text = "[products.adbreaks]\nmax_attempts = 3\nretry_base_secs = 0.5\nretry_max_secs = 30\n[products.scenes]\n";
    let settings = FileConfig::parse(text)
        .unwrap()
        .resolve(Overrides::default())
        .unwrap();
    let adbreaks = &settings.products[0].settings;
    assert_eq!(adbreaks.max_attempts, 3);
    let retry = adbreaks.retry.as_ref().expect("its own back-off");
    assert_eq!(
        (retry.base, retry.max),
        (Duration::from_millis(500), Duration::from_secs(30))
    );
    let scenes = &settings.products[1].settings;
    assert_eq!((scenes.max_attempts, scenes.retry.as_ref()), (10, None));
    for (bad, field) in [
        ("max_attempts = 0", "max_attempts"),
        ("retry_base_secs = -1", "retry_base_secs"),
        ("retry_base_secs = 10\nretry_max_secs = 5", "retry_max_secs"),
    ] {
        let text = format!("[products.adbreaks]\n{bad}\n");
        let err = FileConfig::parse(&text)
            .unwrap()
            .resolve(Overrides::default())
            .unwrap_err();
        assert!(err.to_string().contains(field), "{bad}: {err}");
    }
}

#[test]
fn store_is_a_directory_or_a_url_from_the_file_or_the_flags() {
    let file = FileConfig::parse(
        "store = \"postgres://taskd@db.internal/tasks\"\n[postgres]\nschema = \"media\"\nmax_connections = 20\n",
    )
    .unwrap();
    let s = file.resolve(Overrides::default()).unwrap();
    let StoreSetting::Postgres(pg) = &s.store else {
        panic!("{:?}", s.store);
    };
    assert_eq!(
        (pg.schema.as_str(), pg.max_connections),
        ("media", Some(20))
    );
    assert!(s.store.is_shared());

    // A flag wins over the file, whichever spelling either uses.
    let file = FileConfig::parse("data_dir = \"/var/lib/taskd\"\n").unwrap();
    let flags = Overrides {
        store: Some("postgres://db/tasks".into()),
        ..Overrides::default()
    };
    assert!(file.resolve(flags).unwrap().store.is_shared());
    let file = FileConfig::parse("store = \"postgres://db/tasks\"\n").unwrap();
    let flags = Overrides {
        data_dir: Some("/srv/sled".into()),
        ..Overrides::default()
    };
    assert_eq!(
        file.resolve(flags).unwrap().store,
        StoreSetting::Sled {
            dir: PathBuf::from("/srv/sled")
        }
    );
    let file = FileConfig::parse("store = \"/srv/sled\"\n").unwrap();
    assert!(
        !file
            .resolve(Overrides::default())
            .unwrap()
            .store
            .is_shared()
    );
}

#[test]
fn two_spellings_of_the_store_at_one_level_are_refused() {
    let file = FileConfig::parse("store = \"/a\"\ndata_dir = \"/b\"\n").unwrap();
    let err = file.resolve(Overrides::default()).unwrap_err().to_string();
    assert!(err.contains("data_dir") && err.contains("\"/a\""), "{err}");
    let both = Overrides {
        store: Some("postgres://db/x".into()),
        data_dir: Some("/b".into()),
        ..Overrides::default()
    };
    let err = FileConfig::default().resolve(both).unwrap_err().to_string();
    assert!(
        err.contains("--store") && err.contains("--data-dir"),
        "{err}"
    );
    let err = FileConfig::parse("store = \"redis://x\"\n")
        .unwrap()
        .resolve(Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("redis://"), "{err}");
    let err = FileConfig::parse("[postgres]\nport = 1\n").unwrap_err();
    assert!(err.contains("port"), "{err}");
}

#[test]
fn a_worker_needs_no_api_key_on_an_open_address() {
    let worker = Overrides {
        listen: Some("0.0.0.0:8081".into()),
        without_api: true,
        ..Overrides::default()
    };
    assert!(FileConfig::default().resolve(worker).is_ok());
}

#[test]
fn the_readme_configuration_parses_and_its_webhook_settings_hold() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("### Configuration")
        .nth(1)
        .expect("the README has a Configuration section");
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("with a TOML block");
    let file = FileConfig::parse(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
    let webhooks = file.webhooks.dispatcher_config().unwrap();
    assert_eq!(webhooks.max_in_flight_per_webhook, 4);
    assert_eq!(webhooks.retry_for, Duration::from_secs(24 * 3600));
    assert_eq!(file.webhooks.subscriptions.len(), 1);
    let metrics = file.metrics.resolve(&[]).unwrap();
    assert_eq!(metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(metrics.scrape_key.as_deref(), Some("a-long-random-token"));
}

#[test]
fn thumbnails_options_are_checked_at_start_and_named() {
    let resolve = |text: &str| {
        FileConfig::parse(text)
            .unwrap()
            .resolve(Overrides::default())
    };
    let s = resolve(
        "[products.thumbnails]\noutput = \"s3://stills/thumbs\"\nmax_stills = 5\n[products.scenes]\n",
    )
    .unwrap();
    let thumbnails = s
        .products
        .iter()
        .find(|p| p.name.as_str() == "thumbnails")
        .unwrap();
    assert_eq!(
        thumbnails.analyzer.output.as_deref(),
        Some("s3://stills/thumbs")
    );
    assert_eq!(thumbnails.analyzer.max_stills, Some(5));
    for (text, field, words) in [
        (
            "[products.thumbnails]\n",
            "products.thumbnails.output",
            "required",
        ),
        (
            "[products.thumbnails]\noutput = \"relative/dir\"\n",
            "products.thumbnails.output",
            "expected s3://",
        ),
        (
            "[products.thumbnails]\noutput = \"file:///srv/stills\"\nmax_stills = 0\n",
            "products.thumbnails.max_stills",
            "from 1 to 999",
        ),
        (
            "[products.scenes]\noutput = \"file:///srv/stills\"\n",
            "products.scenes.output",
            "writes no files",
        ),
    ] {
        let err = resolve(text).unwrap_err().to_string();
        assert!(err.contains(field) && err.contains(words), "{text}: {err}");
    }
    let err = FileConfig::parse("[products.thumbnails]\noutput_dir = \"x\"\n").unwrap_err();
    assert!(err.contains("output_dir"), "{err}");
}

#[test]
fn markers_need_the_fingerprint_product_and_one_of_its_versions() {
    let resolve = |text: &str| {
        FileConfig::parse(text)
            .unwrap()
            .resolve(Overrides::default())
    };
    let s = resolve("[products.markers]\n[products.fingerprint]\n").unwrap();
    let markers = s
        .products
        .iter()
        .find(|p| p.name.as_str() == "markers")
        .unwrap();
    assert_eq!(
        markers.fingerprint_version.as_ref().map(|v| v.as_str()),
        Some("1"),
        "the default fingerprint version"
    );
    for (text, field, words) in [
        (
            "[products.markers]\n",
            "products.markers",
            "need the fingerprint product",
        ),
        (
            "[products.markers]\nfingerprint_version = \"2\"\n[products.fingerprint]\nversions = [\"1\"]\n",
            "products.markers.fingerprint_version",
            "not among the fingerprint product's versions",
        ),
        (
            "[products.scenes]\nfingerprint_version = \"1\"\n",
            "products.scenes.fingerprint_version",
            "only the markers product",
        ),
    ] {
        let err = resolve(text).unwrap_err().to_string();
        assert!(err.contains(field) && err.contains(words), "{text}: {err}");
    }
}
