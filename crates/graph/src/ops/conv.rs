//! Conv and ConvTranspose (ONNX semantics: NCHW data, OIHW / IOHW filters, any spatial rank).

/// How padding is chosen when explicit pads are not given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AutoPad {
    /// Use the explicit `pads`.
    #[default]
    NotSet,
    /// Output size = ceil(input / stride); an odd total pad puts the extra element at the end.
    SameUpper,
    /// As SameUpper, with the extra element at the beginning.
    SameLower,
    /// No padding.
    Valid,
}

/// Convolution. Inputs: X `[N, C, spatial...]`, W `[M, C/group, kernel...]`, optional B `[M]`.
///
/// Empty `strides` / `dilations` mean 1 on every spatial axis; empty `pads` means 0. `pads` lists all
/// begin pads, then all end pads (ONNX order). `kernel_shape` is taken from W when `None`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Conv {
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<usize>,
    pub auto_pad: AutoPad,
    pub group: usize,
}

/// Transposed convolution. Inputs: X `[N, C, spatial...]`, W `[C, M/group, kernel...]`, optional B.
///
/// Field defaults as for [`Conv`]; `output_padding` empty means 0; `output_shape` (spatial dims only)
/// overrides `pads` as ONNX specifies.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConvTranspose {
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<usize>,
    pub auto_pad: AutoPad,
    pub group: usize,
    pub output_padding: Vec<usize>,
    pub output_shape: Option<Vec<usize>>,
}

use super::common::{check_alloc, fact, optional, require_float, required};
use crate::ir::{Dim, OpError, OpResult, Shape, Tensor, TensorData, TensorFact};

/// Resolved per-axis window parameters of a conv or pool over `spatial` axes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowGeometry {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads_begin: Vec<usize>,
    pub pads_end: Vec<usize>,
}

fn per_axis(values: &[usize], n: usize, default: usize, name: &str) -> OpResult<Vec<usize>> {
    if values.is_empty() {
        return Ok(vec![default; n]);
    }
    if values.len() != n {
        return Err(OpError::attr(
            name,
            format!("has {} values for {n} spatial axes", values.len()),
        ));
    }
    if default == 1 && values.contains(&0) {
        return Err(OpError::attr(name, "values must be positive"));
    }
    Ok(values.to_vec())
}

/// Extent of a dilated kernel.
fn effective(kernel: usize, dilation: usize) -> usize {
    kernel
        .saturating_sub(1)
        .saturating_mul(dilation)
        .saturating_add(1)
}

impl WindowGeometry {
    /// Strides, dilations and explicit pads checked against the spatial rank; SAME pads are resolved
    /// per input by [`WindowGeometry::resolve_auto_pad`].
    pub fn new(
        kernel: &[usize],
        strides: &[usize],
        dilations: &[usize],
        pads: &[usize],
    ) -> OpResult<WindowGeometry> {
        let n = kernel.len();
        if kernel.contains(&0) {
            return Err(OpError::attr("kernel_shape", "values must be positive"));
        }
        let strides = per_axis(strides, n, 1, "strides")?;
        let dilations = per_axis(dilations, n, 1, "dilations")?;
        let pads = if pads.is_empty() {
            vec![0; 2 * n]
        } else if pads.len() == 2 * n {
            pads.to_vec()
        } else {
            return Err(OpError::attr(
                "pads",
                format!(
                    "has {} values for {n} spatial axes (needs {})",
                    pads.len(),
                    2 * n
                ),
            ));
        };
        Ok(WindowGeometry {
            kernel: kernel.to_vec(),
            strides,
            dilations,
            pads_begin: pads[..n].to_vec(),
            pads_end: pads[n..].to_vec(),
        })
    }

    /// Sets the pads that `auto_pad` asks for on an input of the given spatial size.
    pub fn resolve_auto_pad(&mut self, auto_pad: AutoPad, input: &[usize]) {
        for (i, &size) in input.iter().enumerate() {
            let k = effective(self.kernel[i], self.dilations[i]);
            let s = self.strides[i];
            match auto_pad {
                AutoPad::NotSet => {}
                AutoPad::Valid => {
                    self.pads_begin[i] = 0;
                    self.pads_end[i] = 0;
                }
                AutoPad::SameUpper | AutoPad::SameLower => {
                    let out = size.div_ceil(s);
                    let total = out
                        .saturating_sub(1)
                        .saturating_mul(s)
                        .saturating_add(k)
                        .saturating_sub(size);
                    let small = total / 2;
                    let large = total - small;
                    if auto_pad == AutoPad::SameUpper {
                        self.pads_begin[i] = small;
                        self.pads_end[i] = large;
                    } else {
                        self.pads_begin[i] = large;
                        self.pads_end[i] = small;
                    }
                }
            }
        }
    }

    /// Output size along axis `i` for an input of `size` (floor, or ceil with `ceil_mode`).
    pub fn output_size(&self, i: usize, size: usize, ceil_mode: bool) -> OpResult<usize> {
        let k = effective(self.kernel[i], self.dilations[i]);
        let padded = size
            .saturating_add(self.pads_begin[i])
            .saturating_add(self.pads_end[i]);
        if padded < k {
            return Err(OpError::shape(format!(
                "spatial axis {i}: input {size} with pads {}+{} is smaller than the kernel extent {k}",
                self.pads_begin[i], self.pads_end[i]
            )));
        }
        let span = padded - k;
        let s = self.strides[i];
        let mut out = if ceil_mode {
            span.div_ceil(s)
        } else {
            span / s
        } + 1;
        // With ceil_mode the last window must start inside the input or the begin padding.
        if ceil_mode && (out - 1).saturating_mul(s) >= size.saturating_add(self.pads_begin[i]) {
            out -= 1;
        }
        Ok(out)
    }
}

fn spatial_out_dims(
    geometry: &WindowGeometry,
    auto_pad: AutoPad,
    input: &[Dim],
    ceil_mode: bool,
) -> OpResult<Vec<Dim>> {
    let mut out = Vec::with_capacity(input.len());
    for (i, d) in input.iter().enumerate() {
        let dim = match d {
            Dim::Fixed(size) => {
                let mut g = geometry.clone();
                let sizes: Vec<usize> = input.iter().map(|d| d.fixed().unwrap_or(1)).collect();
                g.resolve_auto_pad(auto_pad, &sizes);
                Dim::Fixed(g.output_size(i, *size, ceil_mode)?)
            }
            sym => sym.map("window", |_| None).unwrap_or_else(Dim::unknown),
        };
        out.push(dim);
    }
    Ok(out)
}

/// Output shape of a windowed op (conv or pool) on `x` with `channels` output channels.
pub(crate) fn window_output_shape(
    x: &Shape,
    channels: Dim,
    geometry: &WindowGeometry,
    auto_pad: AutoPad,
    ceil_mode: bool,
) -> OpResult<Shape> {
    let spatial = &x.dims()[2..];
    let mut dims = vec![x.dims()[0].clone(), channels];
    dims.extend(spatial_out_dims(geometry, auto_pad, spatial, ceil_mode)?);
    Ok(Shape(dims))
}

/// Pads a spatial description to three axes (leading unit axes) so one loop nest handles 1-D to 3-D.
pub(crate) fn to3(v: &[usize], fill: usize) -> [usize; 3] {
    let mut out = [fill; 3];
    let off = 3 - v.len();
    out[off..].copy_from_slice(v);
    out
}

impl Conv {
    fn kernel<'a>(&'a self, w: &'a [Dim]) -> OpResult<Vec<usize>> {
        if let Some(k) = &self.kernel_shape {
            if k.len() + 2 != w.len() {
                return Err(OpError::attr(
                    "kernel_shape",
                    format!("has {} axes but the filter has rank {}", k.len(), w.len()),
                ));
            }
            return Ok(k.clone());
        }
        w[2..]
            .iter()
            .map(|d| {
                d.fixed()
                    .ok_or_else(|| OpError::shape("the filter's spatial dims must be known"))
            })
            .collect()
    }

    /// Window parameters for a filter of the given shape.
    pub fn geometry(&self, w: &[Dim]) -> OpResult<WindowGeometry> {
        let k = self.kernel(w)?;
        WindowGeometry::new(&k, &self.strides, &self.dilations, &self.pads)
    }

    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let x = required(inputs, 0, "X")?;
        let w = required(inputs, 1, "W")?;
        require_float(x.dtype, "X")?;
        if w.dtype != x.dtype {
            return Err(OpError::other(format!(
                "W is {} but X is {}",
                w.dtype, x.dtype
            )));
        }
        let rank = x.shape.rank();
        if !(3..=5).contains(&rank) || w.shape.rank() != rank {
            return Err(OpError::shape(format!(
                "X {} and W {} must have the same rank, 3 to 5",
                x.shape, w.shape
            )));
        }
        let group = self.group.max(1);
        let wd = w.shape.dims();
        if let (Some(c), Some(wc)) = (x.shape.dims()[1].fixed(), wd[1].fixed())
            && Some(c) != wc.checked_mul(group)
        {
            return Err(OpError::shape(format!(
                "X has {c} channels but W {} with group {group} expects {}",
                w.shape,
                wc.saturating_mul(group)
            )));
        }
        if let Some(m) = wd[0].fixed()
            && m % group != 0
        {
            return Err(OpError::shape(format!(
                "{m} output channels do not divide into {group} groups"
            )));
        }
        if let Some(b) = optional(inputs, 2)
            && (b.shape.rank() != 1
                || (b.shape.dims()[0].fixed().zip(wd[0].fixed())).is_some_and(|(a, m)| a != m))
        {
            return Err(OpError::shape(format!(
                "bias {} does not match {} output channels",
                b.shape, wd[0]
            )));
        }
        let g = self.geometry(wd)?;
        let shape = window_output_shape(&x.shape, wd[0].clone(), &g, self.auto_pad, false)?;
        Ok(vec![fact(x.dtype, shape)])
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = required(inputs, 0, "X")?;
        let w = required(inputs, 1, "W")?;
        let b = optional(inputs, 2);
        let xs = x.shape();
        let ws = w.shape();
        let rank = xs.len();
        if !(3..=5).contains(&rank) || ws.len() != rank {
            return Err(OpError::shape(format!(
                "X {xs:?} and W {ws:?} must have the same rank, 3 to 5"
            )));
        }
        let group = self.group.max(1);
        let (n, c, m, cg) = (xs[0], xs[1], ws[0], ws[1]);
        if c != cg * group || m % group != 0 {
            return Err(OpError::shape(format!(
                "X {xs:?}, W {ws:?} and group {group} do not fit together"
            )));
        }
        let wdims: Vec<Dim> = ws.iter().map(|&d| Dim::Fixed(d)).collect();
        let mut g = self.geometry(&wdims)?;
        if g.kernel != ws[2..] {
            return Err(OpError::attr(
                "kernel_shape",
                format!("{:?} differs from W {ws:?}", g.kernel),
            ));
        }
        g.resolve_auto_pad(self.auto_pad, &xs[2..]);
        let out_spatial: Vec<usize> = (0..rank - 2)
            .map(|i| g.output_size(i, xs[2 + i], false))
            .collect::<OpResult<_>>()?;
        let bias = match b {
            Some(b) if b.len() == m => b.to_f64_vec(),
            Some(b) => {
                return Err(OpError::shape(format!(
                    "bias {:?} does not match {m} channels",
                    b.shape()
                )));
            }
            None => vec![0.0; m],
        };
        let mut out_shape = vec![n, m];
        out_shape.extend(&out_spatial);
        check_alloc(&out_shape)?;

        let xv = x.to_f32_vec();
        let wv = w.to_f32_vec();
        let [id, ih, iw] = to3(&xs[2..], 1);
        let [od, oh, ow] = to3(&out_spatial, 1);
        let [kd, kh, kw] = to3(&g.kernel, 1);
        let [sd, sh, sw] = to3(&g.strides, 1);
        let [dd, dh, dw] = to3(&g.dilations, 1);
        let [pd, ph, pw] = to3(&g.pads_begin, 0);
        let mg = m / group;
        let in_plane = id * ih * iw;
        let k_size = kd * kh * kw;
        let mut out = Vec::with_capacity(n * m * od * oh * ow);
        for bn in 0..n {
            for (oc, &oc_bias) in bias.iter().enumerate() {
                let grp = oc / mg;
                for z in 0..od {
                    for y in 0..oh {
                        for xo in 0..ow {
                            let mut acc = oc_bias;
                            for ic in 0..cg {
                                let ch = grp * cg + ic;
                                let x_base = (bn * c + ch) * in_plane;
                                let w_base = (oc * cg + ic) * k_size;
                                for a in 0..kd {
                                    let zi = (z * sd + a * dd) as isize - pd as isize;
                                    if zi < 0 || zi >= id as isize {
                                        continue;
                                    }
                                    for bb in 0..kh {
                                        let yi = (y * sh + bb * dh) as isize - ph as isize;
                                        if yi < 0 || yi >= ih as isize {
                                            continue;
                                        }
                                        for cc in 0..kw {
                                            let xi = (xo * sw + cc * dw) as isize - pw as isize;
                                            if xi < 0 || xi >= iw as isize {
                                                continue;
                                            }
                                            let xv_i = x_base
                                                + (zi as usize * ih + yi as usize) * iw
                                                + xi as usize;
                                            let w_i = w_base + (a * kh + bb) * kw + cc;
                                            acc += f64::from(xv[xv_i]) * f64::from(wv[w_i]);
                                        }
                                    }
                                }
                            }
                            out.push(acc);
                        }
                    }
                }
            }
        }
        Ok(vec![
            Tensor::try_new(out_shape, TensorData::F64(out))?.cast(x.dtype()),
        ])
    }
}

impl ConvTranspose {
    fn kernel(&self, w: &[Dim]) -> OpResult<Vec<usize>> {
        Conv {
            kernel_shape: self.kernel_shape.clone(),
            ..Conv::default()
        }
        .kernel(w)
    }

    /// Resolves pads and the output spatial size for an input of spatial size `input`.
    pub fn resolve(&self, w: &[Dim], input: &[usize]) -> OpResult<(WindowGeometry, Vec<usize>)> {
        let k = self.kernel(w)?;
        let n = k.len();
        let mut g = WindowGeometry::new(&k, &self.strides, &self.dilations, &self.pads)?;
        let out_pad = if self.output_padding.is_empty() {
            vec![0; n]
        } else if self.output_padding.len() == n {
            self.output_padding.clone()
        } else {
            return Err(OpError::attr("output_padding", format!("needs {n} values")));
        };
        // Full (unpadded) extent of the transposed conv along each axis.
        let full: Vec<usize> = (0..n)
            .map(|i| {
                g.strides[i]
                    .saturating_mul(input[i].saturating_sub(1))
                    .saturating_add(out_pad[i])
                    .saturating_add(effective(k[i], g.dilations[i]))
            })
            .collect();
        let target: Option<Vec<usize>> = match (&self.output_shape, self.auto_pad) {
            (Some(s), _) => {
                // output_shape may list all dims or only the spatial ones.
                let s = if s.len() == n + 2 {
                    s[2..].to_vec()
                } else {
                    s.clone()
                };
                if s.len() != n {
                    return Err(OpError::attr(
                        "output_shape",
                        format!("needs {n} spatial values"),
                    ));
                }
                Some(s)
            }
            (None, AutoPad::SameUpper | AutoPad::SameLower) => Some(
                (0..n)
                    .map(|i| input[i].saturating_mul(g.strides[i]))
                    .collect(),
            ),
            _ => None,
        };
        let out = match target {
            Some(t) => {
                for i in 0..n {
                    let total = full[i].checked_sub(t[i]).ok_or_else(|| {
                        OpError::shape(format!(
                            "output size {} along spatial axis {i} is larger than the full extent {}",
                            t[i], full[i]
                        ))
                    })?;
                    let small = total / 2;
                    if self.auto_pad == AutoPad::SameUpper {
                        g.pads_begin[i] = small;
                        g.pads_end[i] = total - small;
                    } else {
                        g.pads_begin[i] = total - small;
                        g.pads_end[i] = small;
                    }
                }
                t
            }
            None => {
                if self.auto_pad == AutoPad::Valid {
                    g.pads_begin.iter_mut().for_each(|p| *p = 0);
                    g.pads_end.iter_mut().for_each(|p| *p = 0);
                }
                (0..n)
                    .map(|i| {
                        full[i]
                            .checked_sub(g.pads_begin[i].saturating_add(g.pads_end[i]))
                            .filter(|&o| o > 0)
                            .ok_or_else(|| {
                                OpError::shape(format!(
                                    "pads remove the whole output along spatial axis {i}"
                                ))
                            })
                    })
                    .collect::<OpResult<_>>()?
            }
        };
        Ok((g, out))
    }

    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let x = required(inputs, 0, "X")?;
        let w = required(inputs, 1, "W")?;
        require_float(x.dtype, "X")?;
        let rank = x.shape.rank();
        if !(3..=5).contains(&rank) || w.shape.rank() != rank {
            return Err(OpError::shape(format!(
                "X {} and W {} must have the same rank, 3 to 5",
                x.shape, w.shape
            )));
        }
        let group = self.group.max(1);
        let wd = w.shape.dims();
        if let (Some(c), Some(wc)) = (x.shape.dims()[1].fixed(), wd[0].fixed())
            && c != wc
        {
            return Err(OpError::shape(format!(
                "X has {c} channels but W {} expects {wc}",
                w.shape
            )));
        }
        let channels = wd[1]
            .map("group", |m| m.checked_mul(group))
            .unwrap_or_else(Dim::unknown);
        let spatial = &x.shape.dims()[2..];
        let mut dims = vec![x.shape.dims()[0].clone(), channels];
        if let Some(sizes) = spatial
            .iter()
            .map(Dim::fixed)
            .collect::<Option<Vec<usize>>>()
        {
            let (_, out) = self.resolve(wd, &sizes)?;
            dims.extend(out.into_iter().map(Dim::Fixed));
        } else {
            dims.extend(spatial.iter().map(|d| {
                d.map("convtranspose", |_| None)
                    .unwrap_or_else(Dim::unknown)
            }));
        }
        Ok(vec![fact(x.dtype, Shape(dims))])
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = required(inputs, 0, "X")?;
        let w = required(inputs, 1, "W")?;
        let xs = x.shape();
        let ws = w.shape();
        let rank = xs.len();
        if !(3..=5).contains(&rank) || ws.len() != rank {
            return Err(OpError::shape(format!(
                "X {xs:?} and W {ws:?} must have the same rank, 3 to 5"
            )));
        }
        let group = self.group.max(1);
        let (n, c) = (xs[0], xs[1]);
        if ws[0] != c || c % group != 0 {
            return Err(OpError::shape(format!(
                "X {xs:?} and W {ws:?} do not fit together with group {group}"
            )));
        }
        let cg = c / group;
        let mg = ws[1];
        let m = mg * group;
        let wdims: Vec<Dim> = ws.iter().map(|&d| Dim::Fixed(d)).collect();
        let (g, out_spatial) = self.resolve(&wdims, &xs[2..])?;
        if g.kernel != ws[2..] {
            return Err(OpError::attr(
                "kernel_shape",
                format!("{:?} differs from W {ws:?}", g.kernel),
            ));
        }
        let bias = match optional(inputs, 2) {
            Some(b) if b.len() == m => b.to_f64_vec(),
            Some(b) => {
                return Err(OpError::shape(format!(
                    "bias {:?} does not match {m} channels",
                    b.shape()
                )));
            }
            None => vec![0.0; m],
        };
        let mut out_shape = vec![n, m];
        out_shape.extend(&out_spatial);
        let total = check_alloc(&out_shape)?;
        let [id, ih, iw] = to3(&xs[2..], 1);
        let [od, oh, ow] = to3(&out_spatial, 1);
        let [kd, kh, kw] = to3(&g.kernel, 1);
        let [sd, sh, sw] = to3(&g.strides, 1);
        let [dd, dh, dw] = to3(&g.dilations, 1);
        let [pd, ph, pw] = to3(&g.pads_begin, 0);
        let out_plane = od * oh * ow;
        let mut out = vec![0.0f64; total];
        for bn in 0..n {
            for (oc, &b) in bias.iter().enumerate() {
                let base = (bn * m + oc) * out_plane;
                out[base..base + out_plane].iter_mut().for_each(|v| *v = b);
            }
        }
        let xv = x.to_f32_vec();
        let wv = w.to_f32_vec();
        let k_size = kd * kh * kw;
        for bn in 0..n {
            for ic in 0..c {
                let grp = ic / cg;
                for z in 0..id {
                    for y in 0..ih {
                        for xi in 0..iw {
                            let v = f64::from(xv[(((bn * c + ic) * id + z) * ih + y) * iw + xi]);
                            for om in 0..mg {
                                let oc = grp * mg + om;
                                let w_base = (ic * mg + om) * k_size;
                                let o_base = (bn * m + oc) * out_plane;
                                for a in 0..kd {
                                    let zo = (z * sd + a * dd) as isize - pd as isize;
                                    if zo < 0 || zo >= od as isize {
                                        continue;
                                    }
                                    for bb in 0..kh {
                                        let yo = (y * sh + bb * dh) as isize - ph as isize;
                                        if yo < 0 || yo >= oh as isize {
                                            continue;
                                        }
                                        for cc in 0..kw {
                                            let xo = (xi * sw + cc * dw) as isize - pw as isize;
                                            if xo < 0 || xo >= ow as isize {
                                                continue;
                                            }
                                            let o = o_base
                                                + (zo as usize * oh + yo as usize) * ow
                                                + xo as usize;
                                            out[o] +=
                                                v * f64::from(wv[w_base + (a * kh + bb) * kw + cc]);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(vec![
            Tensor::try_new(out_shape, TensorData::F64(out))?.cast(x.dtype()),
        ])
    }
}
