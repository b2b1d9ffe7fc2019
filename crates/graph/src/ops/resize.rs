//! Resize (and Upsample, which importers express as Resize).

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResizeMode {
    Nearest,
    Linear,
    Cubic,
}

/// How an output coordinate maps back to an input coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoordinateTransform {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
}

/// How a fractional input coordinate picks a pixel in nearest mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
    /// Opset 10 Resize and Upsample: floor when upsampling, ceil when downsampling.
    Simple,
}

/// Inputs: X, optional roi, optional scales (f32), optional sizes (i64), as in opset 13+.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Resize {
    pub mode: ResizeMode,
    pub coordinate_transform: CoordinateTransform,
    pub nearest_mode: NearestMode,
    pub cubic_coeff_a: f32,
    pub exclude_outside: bool,
    pub extrapolation_value: f32,
}

impl Default for Resize {
    fn default() -> Resize {
        Resize {
            mode: ResizeMode::Nearest,
            coordinate_transform: CoordinateTransform::HalfPixel,
            nearest_mode: NearestMode::RoundPreferFloor,
            cubic_coeff_a: -0.75,
            exclude_outside: false,
            extrapolation_value: 0.0,
        }
    }
}

use super::common::{
    check_alloc, fact, fact_f32, fact_i64, int_values, optional, required, strides,
};
use crate::ir::{Dim, OpError, OpResult, Shape, Tensor, TensorData, TensorFact};

/// Output dims from sizes, or from scales as `floor(dim * scale)`.
fn output_dims(dims: &[Dim], scales: Option<&[f32]>, sizes: Option<&[i64]>) -> OpResult<Vec<Dim>> {
    if let Some(sizes) = sizes {
        if sizes.len() != dims.len() {
            return Err(OpError::shape(format!(
                "{} sizes for rank {}",
                sizes.len(),
                dims.len()
            )));
        }
        return sizes
            .iter()
            .map(|&s| {
                usize::try_from(s)
                    .map(Dim::Fixed)
                    .map_err(|_| OpError::shape(format!("negative size {s}")))
            })
            .collect();
    }
    let Some(scales) = scales else {
        return Err(OpError::other("Resize needs scales or sizes"));
    };
    if scales.len() != dims.len() {
        return Err(OpError::shape(format!(
            "{} scales for rank {}",
            scales.len(),
            dims.len()
        )));
    }
    dims.iter()
        .zip(scales)
        .map(|(d, &s)| {
            if !(s > 0.0 && s.is_finite()) {
                return Err(OpError::shape(format!("scale {s} is not positive")));
            }
            Ok(match d {
                Dim::Fixed(n) => Dim::Fixed((*n as f64 * f64::from(s)).floor() as usize),
                d if s == 1.0 => d.clone(),
                d => d.map("resize", |_| None).unwrap_or_else(Dim::unknown),
            })
        })
        .collect()
}

/// Input positions and weights along one axis.
type Taps = Vec<(usize, f64)>;

/// Scales and sizes inputs; an empty tensor counts as absent (opset 11 passes empty scales).
fn present(t: Option<&Tensor>) -> Option<&Tensor> {
    t.filter(|t| !t.is_empty())
}

impl Resize {
    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let x = required(inputs, 0, "X")?;
        let rank = x.shape.rank();
        let nonempty =
            |i: usize| optional(inputs, i).filter(|f| f.shape.element_count() != Some(0));
        let (scales, sizes) = (nonempty(2), nonempty(3));
        let unknown = || Ok(vec![fact(x.dtype, Shape(vec![Dim::unknown(); rank]))]);
        let dims = match (scales, sizes) {
            (_, Some(s)) => match fact_i64(s) {
                Some(v) => output_dims(x.shape.dims(), None, Some(&v))?,
                None => return unknown(),
            },
            (Some(s), None) => match fact_f32(s) {
                Some(v) => output_dims(x.shape.dims(), Some(&v), None)?,
                None => return unknown(),
            },
            (None, None) => return Err(OpError::other("Resize needs scales or sizes")),
        };
        Ok(vec![fact(x.dtype, Shape(dims))])
    }

    /// Input coordinate for output coordinate `o` along an axis.
    fn source_coord(
        &self,
        o: usize,
        in_len: usize,
        out_len: usize,
        scale: f64,
        roi: (f64, f64),
    ) -> f64 {
        let o = o as f64;
        let (i, n) = (in_len as f64, out_len as f64);
        match self.coordinate_transform {
            CoordinateTransform::HalfPixel => (o + 0.5) / scale - 0.5,
            CoordinateTransform::HalfPixelSymmetric => {
                let adjustment = n / (scale * i);
                let center = i / 2.0;
                center * (1.0 - adjustment) + (o + 0.5) / scale - 0.5
            }
            CoordinateTransform::PytorchHalfPixel => {
                if out_len > 1 {
                    (o + 0.5) / scale - 0.5
                } else {
                    0.0
                }
            }
            CoordinateTransform::AlignCorners => {
                if out_len > 1 {
                    o * (i - 1.0) / (n - 1.0)
                } else {
                    0.0
                }
            }
            CoordinateTransform::Asymmetric => o / scale,
            CoordinateTransform::TfCropAndResize => {
                let (a, b) = roi;
                if out_len > 1 {
                    a * (i - 1.0) + o * (b - a) * (i - 1.0) / (n - 1.0)
                } else {
                    0.5 * (a + b) * (i - 1.0)
                }
            }
        }
    }

    /// The input positions and weights one output position along one axis reads; `None` means the
    /// position is outside the crop (tf_crop_and_resize) and takes the extrapolation value.
    fn taps(
        &self,
        o: usize,
        in_len: usize,
        out_len: usize,
        scale: f64,
        roi: (f64, f64),
    ) -> Option<Taps> {
        let x = self.source_coord(o, in_len, out_len, scale, roi);
        let last = in_len as f64 - 1.0;
        if self.coordinate_transform == CoordinateTransform::TfCropAndResize
            && (x < 0.0 || x > last)
        {
            return None;
        }
        let clamp = |v: i64| v.clamp(0, in_len as i64 - 1) as usize;
        Some(match self.mode {
            ResizeMode::Nearest => {
                let r = match self.nearest_mode {
                    NearestMode::RoundPreferFloor => {
                        if x.fract() == 0.5 {
                            x.floor()
                        } else {
                            x.round()
                        }
                    }
                    NearestMode::RoundPreferCeil => x.round(),
                    NearestMode::Floor => x.floor(),
                    NearestMode::Ceil => x.ceil(),
                    NearestMode::Simple => {
                        if scale < 1.0 {
                            x.ceil()
                        } else {
                            x.floor()
                        }
                    }
                };
                vec![(clamp(r as i64), 1.0)]
            }
            ResizeMode::Linear => {
                let x = x.clamp(0.0, last.max(0.0));
                let x0 = x.floor();
                let t = x - x0;
                vec![(clamp(x0 as i64), 1.0 - t), (clamp(x0 as i64 + 1), t)]
            }
            ResizeMode::Cubic => {
                let a = f64::from(self.cubic_coeff_a);
                let x0 = x.floor();
                let t = x - x0;
                // Keys cubic kernel at distances 1+t, t, 1-t, 2-t.
                let w = |d: f64| {
                    let d = d.abs();
                    if d <= 1.0 {
                        ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
                    } else if d < 2.0 {
                        ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
                    } else {
                        0.0
                    }
                };
                let mut taps: Vec<(i64, f64)> =
                    (-1..=2).map(|k| (x0 as i64 + k, w(t - k as f64))).collect();
                if self.exclude_outside {
                    taps.retain(|&(i, _)| (0..in_len as i64).contains(&i));
                    let sum: f64 = taps.iter().map(|t| t.1).sum();
                    if sum != 0.0 {
                        taps.iter_mut().for_each(|t| t.1 /= sum);
                    }
                }
                taps.into_iter().map(|(i, w)| (clamp(i), w)).collect()
            }
        })
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = required(inputs, 0, "X")?;
        let s = x.shape();
        let rank = s.len();
        let scales_in = present(optional(inputs, 2)).map(|t| t.to_f32_vec());
        let sizes_in = present(optional(inputs, 3))
            .map(|t| int_values(t, "sizes"))
            .transpose()?;
        let dims: Vec<Dim> = s.iter().map(|&d| Dim::Fixed(d)).collect();
        let out_shape = Shape(output_dims(
            &dims,
            scales_in.as_deref(),
            sizes_in.as_deref(),
        )?)
        .to_fixed()
        .ok_or_else(|| OpError::shape("unresolved output shape"))?;
        check_alloc(&out_shape)?;
        if s.contains(&0) && out_shape.iter().product::<usize>() > 0 {
            return Err(OpError::shape(
                "cannot resize an empty tensor to a non-empty one",
            ));
        }
        let scales: Vec<f64> = match &scales_in {
            Some(v) if sizes_in.is_none() => v.iter().map(|&f| f64::from(f)).collect(),
            // With sizes the scale is out/in, computed in f32 as ONNX Runtime does.
            _ => s
                .iter()
                .zip(&out_shape)
                .map(|(&i, &o)| f64::from(o as f32 / i.max(1) as f32))
                .collect(),
        };
        let roi: Vec<(f64, f64)> = match present(optional(inputs, 1)) {
            Some(r) if r.len() == 2 * rank => {
                let v = r.to_f64_vec();
                (0..rank).map(|i| (v[i], v[i + rank])).collect()
            }
            _ => vec![(0.0, 1.0); rank],
        };
        let taps: Vec<Vec<Option<Taps>>> = (0..rank)
            .map(|ax| {
                (0..out_shape[ax])
                    .map(|o| self.taps(o, s[ax], out_shape[ax], scales[ax], roi[ax]))
                    .collect()
            })
            .collect();
        let st = strides(s);
        let xv = x.to_f64_vec();
        let extrapolation = f64::from(self.extrapolation_value);
        let mut out = Vec::with_capacity(out_shape.iter().product());
        let mut idx = vec![0usize; rank];
        super::common::for_each_index(&out_shape, |o| {
            idx.copy_from_slice(o);
            let per_axis: Option<Vec<&Vec<(usize, f64)>>> =
                (0..rank).map(|ax| taps[ax][idx[ax]].as_ref()).collect();
            let Some(per_axis) = per_axis else {
                out.push(extrapolation);
                return;
            };
            // Sum over the cartesian product of the per-axis taps.
            let mut acc = 0.0;
            let mut choice = vec![0usize; rank];
            loop {
                let mut w = 1.0;
                let mut pos = 0;
                for ax in 0..rank {
                    let (i, wt) = per_axis[ax][choice[ax]];
                    w *= wt;
                    pos += i * st[ax];
                }
                if w != 0.0 {
                    acc += w * xv[pos];
                }
                let mut ax = rank;
                loop {
                    if ax == 0 {
                        out.push(acc);
                        return;
                    }
                    ax -= 1;
                    choice[ax] += 1;
                    if choice[ax] < per_axis[ax].len() {
                        break;
                    }
                    choice[ax] = 0;
                }
            }
        });
        Ok(vec![
            Tensor::try_new(out_shape, TensorData::F64(out))?.cast(x.dtype()),
        ])
    }
}
