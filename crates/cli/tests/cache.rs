//! `taoctl cache list|info|clean` over a cache populated through the engine crate's own API.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{assert_one_line_error, run, stderr, stdout};
use tao_engine::cache::EngineCache;
use tao_engine::plan::{PlanBuilder, PlanIdentity};

fn identity(model: &str, options: &str) -> PlanIdentity {
    PlanIdentity {
        backend: "cpu".into(),
        device: "cpu x86_64 [avx2 fma]".into(),
        model_sha256: model.repeat(32),
        options_sha256: options.repeat(32),
    }
}

/// Stores a plan with `extra` header entries and a `graph` section; returns its path.
fn store(cache: &EngineCache, id: &PlanIdentity, extra: &[(&str, &str)], graph: &[u8]) -> PathBuf {
    let built = cache
        .get_or_build(id, || -> Result<Vec<u8>, String> {
            let mut b = id.stamp(PlanBuilder::new());
            for (k, v) in extra {
                b = b.header(k, *v);
            }
            Ok(b.section("graph", graph.to_vec())
                .section("weights", vec![1u8; 3000])
                .to_bytes())
        })
        .expect("build a plan");
    built.path.expect("stored in the cache")
}

fn key_of(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

fn cache_cmd(cwd: &Path, dir: &Path, args: &[&str]) -> std::process::Output {
    let mut full = vec!["cache", "--cache-dir", dir.to_str().unwrap()];
    full.extend_from_slice(args);
    run(env!("CARGO_BIN_EXE_taoctl"), cwd, &full, &[])
}

fn set_age(path: &Path, days: u64) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(days * 86_400))
        .unwrap();
}

#[test]
fn list_shows_each_plan_and_why_one_is_unreadable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("engines");
    let cache = EngineCache::new(Some(dir.clone()));
    let plain = store(&cache, &identity("11", "22"), &[], b"g1");
    let described = store(
        &cache,
        &identity("33", "44"),
        &[("model-name", "main"), ("options", "dims=[3, 480, 640]")],
        b"g2",
    );
    set_age(&plain, 3);
    // A plan damaged on disk: one flipped byte.
    let broken = dir.join(format!("{}.plan", "ab".repeat(32)));
    let mut bytes = std::fs::read(&described).unwrap();
    bytes[20] ^= 0x40;
    std::fs::write(&broken, bytes).unwrap();

    let out = cache_cmd(tmp.path(), &dir, &["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "header, three plans, total:\n{text}");
    assert!(lines[0].starts_with("KEY"), "{text}");
    let line_of = |path: &Path| {
        let short = &key_of(path)[..16];
        *lines
            .iter()
            .find(|l| l.starts_with(short))
            .unwrap_or_else(|| panic!("no line for {short} in\n{text}"))
    };
    let l = line_of(&plain);
    let size = std::fs::metadata(&plain).unwrap().len();
    assert!(
        l.contains(&tao_cli::commands::inspect::human_bytes(size)),
        "{l}"
    );
    assert!(l.contains("3d"), "age: {l}");
    assert!(l.contains("cpu x86_64 [avx2 fma]"), "{l}");
    assert!(l.contains("sha256:111111111111"), "{l}");
    assert!(l.contains("sha256:222222222222"), "{l}");
    let l = line_of(&described);
    assert!(
        l.contains("  main  ") && l.contains("dims=[3, 480, 640]"),
        "{l}"
    );
    assert!(!l.contains("sha256:"), "descriptions replace hashes: {l}");
    let l = line_of(&broken);
    assert!(l.contains("unreadable: plan is corrupt"), "{l}");
    assert!(lines[4].starts_with("3 plans,"), "{text}");

    let empty = tmp.path().join("none");
    let out = cache_cmd(tmp.path(), &empty, &["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("no plans in "), "{}", stdout(&out));
}

#[test]
fn info_by_key_prefix_or_path() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("engines");
    let cache = EngineCache::new(Some(dir.clone()));
    let path = store(
        &cache,
        &identity("55", "66"),
        &[("model-name", "lpdnet")],
        b"graph-bytes",
    );
    let key = key_of(&path);

    for arg in [&key[..8], key.as_str(), path.to_str().unwrap()] {
        let out = cache_cmd(tmp.path(), &dir, &["info", arg]);
        assert!(out.status.success(), "{arg}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains(&format!("key:       {key}")), "{text}");
        assert!(text.contains("header:    6 entries"), "{text}");
        for entry in [
            "backend         cpu",
            "device          cpu x86_64 [avx2 fma]",
            "model-name      lpdnet",
            &format!("model-sha256    {}", "55".repeat(32)),
            &format!("options-sha256  {}", "66".repeat(32)),
            "producer        tao-infer ",
        ] {
            assert!(text.contains(entry), "{entry:?} in\n{text}");
        }
        assert!(text.contains("sections:  2"), "{text}");
        let graph = text
            .lines()
            .find(|l| l.trim_start().starts_with("graph "))
            .unwrap();
        assert!(graph.contains("length         11"), "{graph}");
        let weights = text
            .lines()
            .find(|l| l.trim_start().starts_with("weights"))
            .unwrap();
        assert!(weights.contains("length       3000"), "{weights}");
        // Sections start on 64-byte boundaries.
        let offset: usize = weights.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(offset % 64, 0, "{weights}");
    }

    let out = cache_cmd(tmp.path(), &dir, &["info", "ffff0000"]);
    assert_one_line_error(&out, "no plan with key ffff0000");
    let out = cache_cmd(tmp.path(), &dir, &["info", "not-a-key"]);
    assert_one_line_error(&out, "neither a plan file nor a cache key");

    let broken = dir.join(format!("{}.plan", "cd".repeat(32)));
    std::fs::write(&broken, b"TAOPLAN\0junk").unwrap();
    let out = cache_cmd(tmp.path(), &dir, &["info", "cdcd"]);
    assert_one_line_error(&out, "unreadable plan");
}

#[test]
fn info_refuses_an_ambiguous_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("engines");
    let cache = EngineCache::new(Some(dir.clone()));
    // 17 keys over 16 hex digits: at least two share their first digit.
    let keys: Vec<String> = (0..17)
        .map(|i| {
            key_of(&store(
                &cache,
                &identity(&format!("{i:02x}"), "00"),
                &[],
                b"g",
            ))
        })
        .collect();
    let shared = keys
        .iter()
        .find(|k| keys.iter().filter(|o| o[..1] == k[..1]).count() > 1)
        .unwrap();
    let out = cache_cmd(tmp.path(), &dir, &["info", &shared[..1]]);
    assert_one_line_error(&out, "is ambiguous:");
    let out = cache_cmd(tmp.path(), &dir, &["info", ""]);
    assert_one_line_error(&out, "neither a plan file nor a cache key");
}

#[test]
fn clean_by_age_then_all() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("engines");
    let cache = EngineCache::new(Some(dir.clone()));
    let old = store(&cache, &identity("01", "02"), &[], b"old");
    let new = store(&cache, &identity("03", "04"), &[], b"new");
    set_age(&old, 10);

    let out = cache_cmd(tmp.path(), &dir, &["clean"]);
    assert_one_line_error(&out, "--all, or --older-than DAYS");
    let out = cache_cmd(tmp.path(), &dir, &["clean", "--all", "--older-than", "1"]);
    assert!(!out.status.success());
    let out = cache_cmd(tmp.path(), &dir, &["clean", "--older-than", "-2"]);
    assert!(!out.status.success());
    assert!(old.exists() && new.exists(), "failed cleans remove nothing");

    let out = cache_cmd(tmp.path(), &dir, &["clean", "--older-than", "7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("removed {}", old.display())),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("1 plan removed"), "{}", stdout(&out));
    assert!(!old.exists() && new.exists());

    let out = cache_cmd(tmp.path(), &dir, &["clean", "--older-than", "0.5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("0 plans removed"), "{}", stdout(&out));
    assert!(new.exists());

    let out = cache_cmd(tmp.path(), &dir, &["clean", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 plan removed"), "{}", stdout(&out));
    assert!(!new.exists());
    assert!(cache.entries().unwrap().is_empty());
}

#[test]
fn cache_dir_comes_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("from-env");
    let cache = EngineCache::new(Some(dir.clone()));
    let path = store(&cache, &identity("12", "34"), &[], b"x");
    let out = run(
        env!("CARGO_BIN_EXE_taoctl"),
        tmp.path(),
        &["cache", "list"],
        &[("TAO_ENGINE_CACHE", dir.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&key_of(&path)[..16]),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains(dir.to_str().unwrap()),
        "{}",
        stdout(&out)
    );

    // --cache-dir wins over the environment.
    let other = tmp.path().join("other");
    let out = run(
        env!("CARGO_BIN_EXE_taoctl"),
        tmp.path(),
        &["cache", "list", "--cache-dir", other.to_str().unwrap()],
        &[("TAO_ENGINE_CACHE", dir.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("no plans in "), "{}", stdout(&out));
}
