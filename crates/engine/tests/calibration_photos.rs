//! Our own calibration of LPDNet on real car photos, compared with NVIDIA's shipped table.

mod common;

use tao_engine::calibration::{CalibrationCache, Calibrator, Method};
use tao_engine::cpu::{CpuEngine, PrepareFresh, lower};

#[test]
fn lpdnet_calibration_on_photos_is_close_to_nvidias() {
    let Some(shared) = common::shared_dir("lpdnet_calibration_on_photos_is_close_to_nvidias")
    else {
        return;
    };
    let mut graph = common::lpdnet("lpdnet").unwrap();
    tao_engine::optimize::optimize(&mut graph).unwrap();
    let program = lower(&graph, &mut PrepareFresh).unwrap();
    let mut engine = CpuEngine::new(program, 1, 2).unwrap();
    let mut calibrator = Calibrator::new();
    let photos = common::car_photos(&shared);
    for photo in &photos {
        // lpd_us_config.txt: BGR, net-scale-factor 1/255, 640x480.
        let input = common::photo_input(photo, 640, 480, true, 1.0 / 255.0);
        calibrator.feed(&mut engine, 1, &[&input]).unwrap();
    }
    let nvidia_text = std::fs::read_to_string(
        shared.join("fixtures/real-etlt/lpdnet_usa_pruned_v1.0/usa_lpd_cal.bin"),
    )
    .unwrap();
    let nvidia = CalibrationCache::parse(&nvidia_text).unwrap();
    for method in [Method::Entropy, Method::MinMax, Method::Percentile(0.9999)] {
        let ours = calibrator.finish(method);
        // Our table is a valid cache that reads back.
        assert_eq!(CalibrationCache::parse(&ours.to_string()).unwrap(), ours);
        let mut ratios = Vec::new();
        for (name, theirs) in &nvidia.scales {
            if let Some((_, mine)) = ours.scales.iter().find(|(n, _)| n == name) {
                ratios.push((name.clone(), mine / theirs));
            }
        }
        ratios.sort_by(|a, b| a.1.total_cmp(&b.1));
        let worst = ratios
            .iter()
            .map(|(_, r)| r.max(1.0 / r))
            .fold(1f32, f32::max);
        let median = ratios[ratios.len() / 2].1;
        println!(
            "{method:?} on {} photos: {} of {} tensors matched; ratio ours/NVIDIA min {:.3} ({}), median {median:.3}, max {:.3} ({}); worst factor {worst:.2}",
            photos.len(),
            ratios.len(),
            nvidia.scales.len(),
            ratios[0].1,
            ratios[0].0,
            ratios[ratios.len() - 1].1,
            ratios[ratios.len() - 1].0,
        );
        // Tensors fused away inside a convolution (pre-activation BatchNorm outputs) are not
        // materialised by the engine and get no scale of ours; the rest must be there.
        assert!(ratios.len() >= 20, "{} tensors matched", ratios.len());
        for (name, r) in &ratios {
            println!("    {r:7.3}  {name}");
        }
        let within_2x = ratios
            .iter()
            .filter(|(_, r)| (0.5..=2.0).contains(r))
            .count();
        match method {
            // The largest values seen on 12 photos against NVIDIA's table from their own data.
            Method::MinMax => assert!(worst < 2.5, "min-max worst factor {worst}"),
            // NVIDIA's table holds about the largest values for every tensor. On 12 photos the
            // KL alone clipped BatchNorm outputs of the residual joins to a tenth of that (worst
            // factor 11); clipping at most 0.01 % of the values keeps them within 3x.
            Method::Entropy => assert!(worst < 3.0, "entropy worst factor {worst}"),
            _ => assert!(
                within_2x * 3 >= ratios.len() * 2,
                "{method:?}: {within_2x} of {} within 2x",
                ratios.len()
            ),
        }
    }
}
