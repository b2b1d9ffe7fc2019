//! The engine cache as users meet it: first build, second load, stale or broken plans rebuilt with a
//! reason, unwritable directories survived, and two processes racing for one engine.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tao_engine::cache::{CacheKey, EngineCache, Outcome};
use tao_engine::plan::{PlanBuilder, PlanIdentity};

fn identity() -> PlanIdentity {
    PlanIdentity {
        backend: "cpu".into(),
        device: "cpu x86_64 [avx2 fma]".into(),
        model_sha256: "11".repeat(32),
        options_sha256: "22".repeat(32),
    }
}

fn plan_bytes(id: &PlanIdentity, payload: &[u8]) -> Vec<u8> {
    id.stamp(PlanBuilder::new())
        .section("graph", payload.to_vec())
        .to_bytes()
}

fn build_ok(id: &PlanIdentity) -> impl FnOnce() -> Result<Vec<u8>, String> + '_ {
    move || Ok(plan_bytes(id, b"graph-bytes"))
}

#[test]
fn first_builds_then_loads() {
    let dir = tempfile::tempdir().unwrap();
    let cache = EngineCache::new(Some(dir.path().join("engines")));
    let id = identity();
    let first = cache.get_or_build(&id, build_ok(&id)).unwrap();
    assert!(
        matches!(first.outcome, Outcome::Built { .. }),
        "{:?}",
        first.outcome
    );
    assert!(first.outcome.describe(None).contains("no cached engine"));
    let second = cache
        .get_or_build(&id, || -> Result<Vec<u8>, String> {
            panic!("must not build again")
        })
        .unwrap();
    assert_eq!(second.outcome, Outcome::Loaded);
    assert_eq!(second.plan.section("graph").unwrap(), b"graph-bytes");
    assert_eq!(second.path, first.path);
    assert_eq!(cache.entries().unwrap().len(), 1);
}

#[test]
fn every_key_input_changes_the_key() {
    let base = identity();
    let mut variants = vec![base.clone()];
    let mut v = base.clone();
    v.backend = "cuda".into();
    variants.push(v);
    let mut v = base.clone();
    v.device = "cpu x86_64 [avx2]".into();
    variants.push(v);
    let mut v = base.clone();
    v.model_sha256 = "33".repeat(32);
    variants.push(v);
    let mut v = base.clone();
    v.options_sha256 = "44".repeat(32);
    variants.push(v);
    let keys: std::collections::HashSet<_> = variants.iter().map(CacheKey::new).collect();
    assert_eq!(keys.len(), variants.len());
    assert_eq!(
        CacheKey::new(&base),
        CacheKey::new(&identity()),
        "stable for equal inputs"
    );
}

/// Puts `bytes` where the plan for `id` lives, then asks for it: it must be rebuilt, with `why`.
fn assert_rebuilt(bytes: &[u8], why: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cache = EngineCache::new(Some(dir.path().to_owned()));
    let id = identity();
    let path = cache.plan_path(&CacheKey::new(&id)).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let got = cache.get_or_build(&id, build_ok(&id)).unwrap();
    let Outcome::Built { reason } = &got.outcome else {
        panic!("expected a rebuild, got {:?}", got.outcome);
    };
    assert!(
        reason.contains("rejected") && reason.contains(why),
        "{reason}"
    );
    assert_eq!(got.plan.section("graph").unwrap(), b"graph-bytes");
    // The replacement is valid: next time it loads.
    let again = cache.get_or_build(&id, build_ok(&id)).unwrap();
    assert_eq!(again.outcome, Outcome::Loaded);
}

#[test]
fn truncated_plan_is_rebuilt() {
    let good = plan_bytes(&identity(), b"graph-bytes");
    assert_rebuilt(&good[..good.len() / 2], "truncated");
}

#[test]
fn corrupt_plan_is_rebuilt() {
    let mut bad = plan_bytes(&identity(), b"graph-bytes");
    let n = bad.len();
    bad[n - 10] ^= 0xff;
    assert_rebuilt(&bad, "corrupt");
}

#[test]
fn foreign_device_plan_is_rebuilt() {
    let mut other = identity();
    other.device = "cpu aarch64 [neon dotprod]".into();
    assert_rebuilt(&plan_bytes(&other, b"x"), "built for cpu aarch64");
}

#[test]
fn older_format_plan_is_rebuilt() {
    let mut old = plan_bytes(&identity(), b"x");
    old[8..12].copy_from_slice(&0u32.to_le_bytes());
    assert_rebuilt(&old, "format version 0");
}

#[test]
fn garbage_file_is_rebuilt() {
    assert_rebuilt(b"this is not an engine", "not a plan");
}

#[test]
fn uncreatable_directory_builds_in_memory_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"").unwrap();
    let cache = EngineCache::new(Some(blocker.join("engines")));
    let id = identity();
    let got = cache.get_or_build(&id, build_ok(&id)).unwrap();
    let Outcome::BuiltUncached { reason } = &got.outcome else {
        panic!("{:?}", got.outcome);
    };
    assert!(
        reason.contains("cannot create engine cache directory") && reason.contains("a-file"),
        "{reason}"
    );
    assert!(got.path.is_none());
}

#[test]
fn build_failure_is_reported_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let cache = EngineCache::new(Some(dir.path().to_owned()));
    let err = cache
        .get_or_build(&identity(), || {
            Err::<Vec<u8>, _>("unsupported op Foo in node n1".to_string())
        })
        .unwrap_err();
    assert!(err.to_string().contains("unsupported op Foo"));
    assert!(cache.entries().unwrap().is_empty());
}

#[test]
fn clean_removes_plans() {
    let dir = tempfile::tempdir().unwrap();
    let cache = EngineCache::new(Some(dir.path().to_owned()));
    let id = identity();
    cache.get_or_build(&id, build_ok(&id)).unwrap();
    assert_eq!(
        cache.clean(Some(Duration::from_secs(3600))).unwrap().len(),
        0,
        "too young"
    );
    assert_eq!(cache.clean(None).unwrap().len(), 1);
    assert!(cache.entries().unwrap().is_empty());
}

const RACE_DIR_ENV: &str = "TAO_TEST_RACE_DIR";

/// Child half of the race test: builds slowly, counting builds in a shared file.
fn race_child(dir: &Path) {
    let cache = EngineCache::new(Some(dir.join("engines")));
    let id = identity();
    let got = cache
        .get_or_build(&id, || {
            let mut log = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(dir.join("builds"))
                .unwrap();
            std::io::Write::write_all(&mut log, b"build\n").unwrap();
            std::thread::sleep(Duration::from_millis(500));
            Ok::<_, String>(plan_bytes(&id, b"raced"))
        })
        .unwrap();
    assert_eq!(got.plan.section("graph").unwrap(), b"raced");
    println!(
        "OUTCOME {}",
        if got.outcome.was_built() {
            "built"
        } else {
            "loaded"
        }
    );
}

#[test]
fn two_processes_racing_build_once() {
    if let Some(dir) = std::env::var_os(RACE_DIR_ENV) {
        race_child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let spawn = || {
        Command::new(&exe)
            .args(["--exact", "two_processes_racing_build_once", "--nocapture"])
            .env(RACE_DIR_ENV, dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outputs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let mut outcomes: Vec<String> = outputs
        .iter()
        .map(|o| {
            assert!(o.status.success());
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.lines()
                .find_map(|l| l.strip_prefix("OUTCOME ").map(str::to_owned))
                .expect("child reported")
        })
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["built", "loaded"]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("builds")).unwrap(),
        "build\n"
    );
}

#[cfg(unix)]
#[test]
fn cached_plans_are_readable_by_other_users() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache = EngineCache::new(Some(dir.path().to_owned()));
    let id = identity();
    let got = cache.get_or_build(&id, build_ok(&id)).unwrap();
    let mode = std::fs::metadata(got.path.unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o644);
}
