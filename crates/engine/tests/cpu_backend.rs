//! The CPU engine agrees with the reference executor on real models, at batch 1 and above, and
//! a plan written by a build loads into an engine that gives the same answers.

mod common;

use tao_engine::aligned::AlignedBytes;
use tao_engine::backend::{Backend, BuildConfig, Engine};
use tao_engine::cpu::CpuBackend;
use tao_engine::optimize;
use tao_engine::plan::Plan;
use tao_graph::ir::{Graph, Tensor};
use tao_graph::reference;

fn run_engine(engine: &mut dyn Engine, batch: usize, input: &Tensor) -> Vec<Vec<f32>> {
    let mut outputs: Vec<Vec<f32>> = engine
        .outputs()
        .iter()
        .map(|o| vec![0.0; o.elements_per_image() * batch])
        .collect();
    let mut views: Vec<&mut [f32]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
    engine
        .run(batch, &[input.as_f32().unwrap()], &mut views)
        .unwrap();
    outputs
}

/// Builds, checks against the reference, saves and reloads the plan, checks again.
fn check_model(original: &Graph, input_name: &str, image: &[usize], batch: usize, tol: f64) {
    let mut graph = original.clone();
    optimize::optimize(&mut graph).unwrap();
    let config = BuildConfig {
        max_batch: batch,
        threads: 2,
        ..BuildConfig::default()
    };
    let backend = CpuBackend;
    let plan_bytes = backend.build(&graph, &config).unwrap().to_bytes();
    let plan = Plan::parse(AlignedBytes::from_slice(&plan_bytes)).unwrap();
    let mut engine = backend.load(&plan, 2).unwrap();
    assert_eq!(engine.inputs()[0].name, input_name);

    let mut shape = vec![batch];
    shape.extend_from_slice(image);
    let input = common::random_input(&shape, 42);
    let want = reference::run(original, &[(input_name, input.clone())]).unwrap();
    for b in [batch, 1] {
        let sub = if b == batch {
            input.clone()
        } else {
            let n: usize = image.iter().product();
            let mut s = vec![1];
            s.extend_from_slice(image);
            Tensor::from_f32(s, input.as_f32().unwrap()[..n].to_vec()).unwrap()
        };
        let got = run_engine(engine.as_mut(), b, &sub);
        for ((name, w), g) in want.iter().zip(&got) {
            let per = w.len() / batch;
            let w_part =
                Tensor::from_f32(vec![per * b], w.as_f32().unwrap()[..per * b].to_vec()).unwrap();
            let g_t = Tensor::from_f32(vec![g.len()], g.clone()).unwrap();
            let err = common::relative_error(&g_t, &w_part);
            println!("batch {b} {name}: relative error {err:.2e}");
            assert!(err <= tol, "batch {b} {name}: {err:e}");
        }
    }
}

#[test]
fn lpdnet_cpu_engine_matches_reference() {
    let Some(g) = common::lpdnet("lpdnet_cpu_engine_matches_reference") else {
        return;
    };
    check_model(&g, "input_1", &[3, 480, 640], 2, 1e-4);
}

#[test]
fn fpenet_cpu_engine_matches_reference() {
    let Some(g) = common::fpenet("fpenet_cpu_engine_matches_reference") else {
        return;
    };
    check_model(&g, "input_face_images", &[1, 80, 80], 3, 1e-4);
}

#[test]
fn lpdnet_program_is_fused() {
    let Some(mut g) = common::lpdnet("lpdnet_program_is_fused") else {
        return;
    };
    optimize::optimize(&mut g).unwrap();
    let program = tao_engine::cpu::lower(&g, &mut tao_engine::cpu::PrepareFresh).unwrap();
    let listing: Vec<String> = program
        .steps
        .iter()
        .map(|s| s.describe(&program.values))
        .collect();
    println!("{}", listing.join("\n"));
    let convs = listing.iter().filter(|s| s.starts_with("conv[")).count();
    assert_eq!(convs, 23);
    assert!(
        listing.iter().all(|s| !s.starts_with("reference")),
        "every LPDNet op has a kernel"
    );
    // 23 convs, the sigmoid head and the input/output layout conversions.
    assert!(
        program.steps.len() <= 23 + 1 + 3,
        "{} steps",
        program.steps.len()
    );
}

#[test]
fn second_start_loads_from_the_cache() {
    let Some(g) = common::lpdnet("second_start_loads_from_the_cache") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = tao_engine::cache::EngineCache::new(Some(dir.path().to_owned()));
    let config = BuildConfig {
        max_batch: 1,
        threads: 2,
        ..BuildConfig::default()
    };
    let first = tao_engine::build::build_or_load(
        &g,
        "model-hash",
        "dims=3,480,640",
        &config,
        &CpuBackend,
        &cache,
    )
    .unwrap();
    assert!(first.outcome.was_built(), "{:?}", first.outcome);
    let second = tao_engine::build::build_or_load(
        &g,
        "model-hash",
        "dims=3,480,640",
        &config,
        &CpuBackend,
        &cache,
    )
    .unwrap();
    assert_eq!(second.outcome, tao_engine::cache::Outcome::Loaded);
    assert_eq!(second.plan_path, first.plan_path);
    println!("build {:?}, load {:?}", first.build_time, second.load_time);
    // Other options are another engine.
    let other = tao_engine::build::build_or_load(
        &g,
        "model-hash",
        "dims=3,480,640;outputs=x",
        &config,
        &CpuBackend,
        &cache,
    )
    .unwrap();
    assert!(other.outcome.was_built());
    let input = common::random_input(&[1, 3, 480, 640], 9);
    let (mut a, mut b) = (first.engine, second.engine);
    assert_eq!(
        run_engine(a.as_mut(), 1, &input),
        run_engine(b.as_mut(), 1, &input)
    );
}

/// A CPU backend whose plans carry a weight-layout version that `load` insists on, as a backend
/// does after its packed layout changes while the container format stays the same.
struct LayoutVersioned(&'static str);

impl Backend for LayoutVersioned {
    fn name(&self) -> &'static str {
        CpuBackend.name()
    }

    fn device(&self) -> String {
        CpuBackend.device()
    }

    fn build(
        &self,
        graph: &Graph,
        config: &BuildConfig,
    ) -> tao_engine::backend::EngineResult<tao_engine::plan::PlanBuilder> {
        Ok(CpuBackend
            .build(graph, config)?
            .header("test-layout", self.0))
    }

    fn load(
        &self,
        plan: &Plan,
        threads: usize,
    ) -> tao_engine::backend::EngineResult<Box<dyn Engine>> {
        match plan.header("test-layout") {
            Some(v) if v == self.0 => CpuBackend.load(plan, threads),
            other => Err(tao_engine::backend::EngineError::Invalid(format!(
                "packed layout {other:?}, this build reads {}",
                self.0
            ))),
        }
    }
}

#[test]
fn a_cached_plan_the_backend_refuses_is_rebuilt_with_the_reason() {
    let g = one_conv_graph();
    let dir = tempfile::tempdir().unwrap();
    let cache = tao_engine::cache::EngineCache::new(Some(dir.path().to_path_buf()));
    let config = BuildConfig {
        threads: 1,
        ..BuildConfig::default()
    };
    let build = |backend: &dyn Backend| {
        tao_engine::build::build_or_load(&g, "model-hash", "", &config, backend, &cache).unwrap()
    };
    let old = build(&LayoutVersioned("1"));
    assert!(old.outcome.was_built());
    // Same identity, newer layout: the cached plan parses and matches but cannot be loaded.
    let new = build(&LayoutVersioned("2"));
    let tao_engine::cache::Outcome::Built { reason } = &new.outcome else {
        panic!("expected a rebuild, got {:?}", new.outcome);
    };
    assert!(
        reason.contains("could not be loaded") && reason.contains("this build reads 2"),
        "{reason}"
    );
    assert_eq!(new.plan_path, old.plan_path);
    // The rebuilt plan replaced the old one: the next start loads it.
    assert_eq!(
        build(&LayoutVersioned("2")).outcome,
        tao_engine::cache::Outcome::Loaded
    );
}

/// `relu(conv3x3(x))` on a 1×2×6×6 input, no fixture needed.
fn one_conv_graph() -> Graph {
    use tao_graph::ir::{Conv, DType, Node, Op, Shape, UnaryOp, ValueInfo};
    let mut g = Graph::new("one-conv");
    g.inputs
        .push(ValueInfo::new("x", DType::F32, Shape::fixed(&[1, 2, 6, 6])));
    g.constants.insert(
        "w".into(),
        Tensor::from_f32(vec![3, 2, 3, 3], common::noise(54, 1, -1.0, 1.0)).unwrap(),
    );
    let conv = Conv {
        pads: vec![1, 1, 1, 1],
        group: 1,
        ..Conv::default()
    };
    g.nodes = vec![
        Node::new("conv", Op::Conv(conv), ["x", "w"], ["y"]),
        Node::new("relu", Op::Unary(UnaryOp::Relu), ["y"], ["out"]),
    ];
    g.outputs = vec!["out".into()];
    g
}
