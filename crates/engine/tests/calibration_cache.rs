//! NVIDIA's real calibration caches: read, written back byte for byte, and placed on the real models.

mod common;

use tao_engine::calibration::{Algorithm, CalibrationCache};

fn read(test: &str, rel: &str) -> Option<(String, CalibrationCache)> {
    let path = common::shared_dir(test)?
        .join("fixtures/real-etlt")
        .join(rel);
    let text = std::fs::read_to_string(&path).unwrap();
    let cache =
        CalibrationCache::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Some((text, cache))
}

#[test]
fn real_caches_round_trip_exactly() {
    for (rel, version, entries) in [
        ("lpdnet_usa_pruned_v1.0/usa_lpd_cal.bin", "7000", 38),
        ("fpenet_deployable_v3.0/fpenet_cal.txt", "8001", 68),
        (
            "_calibration-only/trafficcamnet_pruned_v1.0/trafficnet_int8.txt",
            "7000",
            131,
        ),
    ] {
        let Some((text, cache)) = read("real_caches_round_trip_exactly", rel) else {
            return;
        };
        assert_eq!(cache.version, version, "{rel}");
        assert_eq!(cache.algorithm, Algorithm::Entropy2);
        assert_eq!(cache.scales.len(), entries, "{rel}");
        assert_eq!(cache.to_string(), text, "{rel}: written back differs");
        assert_eq!(CalibrationCache::parse(&cache.to_string()).unwrap(), cache);
    }
}

#[test]
fn lpdnet_cache_maps_onto_the_imported_graph() {
    let Some((_, cache)) = read(
        "lpdnet_cache_maps_onto_the_imported_graph",
        "lpdnet_usa_pruned_v1.0/usa_lpd_cal.bin",
    ) else {
        return;
    };
    let graph = common::lpdnet("lpdnet_cache_maps_onto_the_imported_graph").unwrap();
    let mapping = cache.map_to_graph(&graph);
    println!(
        "LPDNet: {} mapped, unmapped: {:?}",
        mapping.mapped.len(),
        mapping.unmapped
    );
    assert_eq!(mapping.mapped.len(), 38);
    // After optimisation the tensors at the end of each fused chain keep their names.
    let mut optimised = graph.clone();
    tao_engine::optimize::optimize(&mut optimised).unwrap();
    let after = cache.map_to_graph(&optimised);
    println!(
        "after optimisation: {} mapped, unmapped: {:?}",
        after.mapped.len(),
        after.unmapped
    );
    assert!(after.mapped.len() >= 30, "{after:?}");
}

#[test]
fn fpenet_cache_maps_onto_the_imported_graph() {
    let Some((_, cache)) = read(
        "fpenet_cache_maps_onto_the_imported_graph",
        "fpenet_deployable_v3.0/fpenet_cal.txt",
    ) else {
        return;
    };
    let graph = common::fpenet("fpenet_cache_maps_onto_the_imported_graph").unwrap();
    let mapping = cache.map_to_graph(&graph);
    println!(
        "FPENet: {} of {} mapped, unmapped: {:?}",
        mapping.mapped.len(),
        cache.scales.len(),
        mapping.unmapped
    );
    assert!(
        mapping.mapped.len() * 10 >= cache.scales.len() * 9,
        "{:?}",
        mapping.unmapped
    );
}
