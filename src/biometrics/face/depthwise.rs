//! The models' 3×3 depthwise convolutions, run by our own op instead of
//! tract's.
//!
//! Why: per-op timing of both plans (issue 19, session s40; tract's
//! `run_plan_with_eval` around every node) put tract 0.23.9's depthwise
//! convolution at 3.0 of the embedder's 9.8 ms and 2.9 of the detector's
//! 11.1 ms — 6 to 7 GFLOP/s, a tenth of what the same core does in its
//! matrix products. Its NCHW path walks every border zone scalar, takes its
//! AVX kernel only for stride 1 and only for whole rows of 8, and the rest
//! of it is compiled for x86-64's baseline (SSE2).
//!
//! Here a channel's plane is copied once into a zero-bordered scratch plane
//! (at stride 2, straight into its even and odd columns: `planes.rs`).
//! At stride 1, rows of a whole number of vectors are summed row by row;
//! other planes are one run: the outputs are computed on the padded
//! plane's grid (two wasted columns per row), each a sum over nine slices
//! of the scratch at fixed offsets, and the rows copied out — so the
//! embedder's 14- and 7-wide rows are not each a vector tail. At stride 2
//! each output row is nine contiguous slices of the even and odd columns.
//! The loop is compiled for the
//! vector unit found at run time (`pulp`: AVX-512 or AVX2 on x86-64, NEON
//! on aarch64), in safe code. A `Relu` or `Clip` after the convolution is
//! folded into the same loop (`rewrite.rs`).
//!
//! The arithmetic is tract's, in tract's order: the bias, then the nine
//! taps row by row, each a multiply then an add (no fused multiply-add), so
//! the values are tract's. A tap in the padding adds `k × 0`, which tract
//! skips: that can only change the sign of a zero sum. The tests hold the
//! op to tract's (equal values) on every shape the two models use; only
//! convolutions of exactly this kind are replaced ([`replace_depthwise`]).

use pulp::{Arch, Simd, WithSimd};

use super::planes::{batch, copy_row, output_fact, output_shape, split_row};
use super::rewrite::{bias_per_channel, replace_convs, ClampFold};
use super::scratch::{Scratch, ScratchState, UsesScratch};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::conv::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;

const TAPS: usize = 9;

/// Where the input sits in the zero-bordered plane and what comes out: the
/// concrete shape the plan was optimised for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Geometry {
    channels: usize,
    /// Input plane.
    h: usize,
    w: usize,
    /// Output plane.
    oh: usize,
    ow: usize,
    /// 1 or 2, both axes.
    stride: usize,
    /// Padding above and left of the input.
    top: usize,
    left: usize,
}

impl Geometry {
    /// The padded plane every output reads from: (oh − 1)·s + 3 rows of
    /// (ow − 1)·s + 3.
    fn padded(&self) -> (usize, usize) {
        (
            (self.oh - 1) * self.stride + 3,
            (self.ow - 1) * self.stride + 3,
        )
    }

    /// Stride 1, rows a whole number of 16-lane vectors (YuNet's 160 and
    /// 80): summed row by row, straight into the output. Other widths (the
    /// embedder's 56 to 7, YuNet's 40 and 20): the outputs computed on the
    /// padded plane's grid, one run per plane (two columns per row wasted),
    /// then their rows copied out — which measured faster than a vector
    /// tail on every row (README figures, s40).
    fn whole_rows(&self) -> bool {
        self.stride == 1 && self.ow.is_multiple_of(16)
    }

    /// At stride 2, the padded plane's even and odd columns, each `ph` rows
    /// of this pitch (the odd plane's last column unused when the padded
    /// width is odd: one pitch lets one run read both).
    fn split_pitch(&self) -> usize {
        self.padded().1.div_ceil(2)
    }

    /// The padded plane, or at stride 2 its even and odd planes.
    fn grid_len(&self) -> usize {
        let (ph, pw) = self.padded();
        match self.stride {
            2 => 2 * ph * self.split_pitch(),
            _ => ph * pw,
        }
    }

    /// The run of outputs computed on the grid's pitch, when the outputs
    /// are computed so: at stride 1, rows not whole vectors; at stride 2,
    /// rows narrower than a vector (the embedder's 14 and 7), whose row by
    /// row sums would be all scalar tail. Output (oy, ox) sits at
    /// oy·pitch + ox, where the pitch is a padded row at stride 1 and two
    /// of the split planes' rows at stride 2.
    fn run_len(&self) -> Option<usize> {
        let pitch = match self.stride {
            2 if self.ow < 16 => 2 * self.split_pitch(),
            2 => return None,
            _ if self.whole_rows() => return None,
            _ => self.padded().1,
        };
        Some((self.oh - 1) * pitch + self.ow)
    }

    /// The scratch a channel is convolved in: the grid, then the run.
    fn scratch_len(&self) -> usize {
        self.grid_len() + self.run_len().unwrap_or(0)
    }
}

/// Depthwise convolution, kernel 3×3, stride 1 or 2 on both axes, no
/// dilation, padding of at most 2 before, (N)CHW f32, weights and bias
/// constant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Depthwise3x3 {
    geometry: Geometry,
    /// `channels × 9`, each channel's taps row by row.
    kernel: Arc<Tensor>,
    /// `channels`.
    bias: Arc<Tensor>,
    /// A clamp folded in from the graph (`f32` bits; see `rewrite.rs`):
    /// the output's `max(low)`, then its `min(high)`.
    low: Option<u32>,
    high: Option<u32>,
}

impl Depthwise3x3 {
    /// Our op for `conv` over an input of `input` shape, with the constant
    /// `kernel` and `bias` — or `None` when it computes something else.
    fn replacing(
        conv: &Conv,
        input: &[usize],
        kernel: &Tensor,
        bias: Option<&Tensor>,
    ) -> Option<Self> {
        let spec = &conv.pool_spec;
        // tract's decluttering drops a batch of one: CHW is NCHW with N = 1.
        let (channels, h, w) = match (spec.data_format, input) {
            (DataFormat::NCHW, &[_, c, h, w]) | (DataFormat::CHW, &[c, h, w]) => (c, h, w),
            _ => return None,
        };
        let stride = spec.strides();
        if conv.q_params.is_some()
            || conv.kernel_fmt != KernelFormat::OIHW
            || spec.kernel_shape[..] != [3, 3]
            || spec.dilations()[..] != [1, 1]
            || stride[0] != stride[1]
            || !(1..=2).contains(&stride[0])
            || conv.group != channels
            || spec.input_channels != channels
            || spec.output_channels != channels
            || kernel.datum_type() != f32::datum_type()
            || kernel.shape() != [channels, 1, 3, 3]
        {
            return None;
        }
        let bias = bias_per_channel(bias, channels)?;
        let padding = spec.computed_padding(&[h, w]);
        let (top, left) = (padding[0].pad_before, padding[1].pad_before);
        let (oh, ow) = (padding[0].convoluted, padding[1].convoluted);
        // More padding before than the kernel reaches is not a model's.
        if oh == 0 || ow == 0 || top > 2 || left > 2 {
            return None;
        }
        let geometry = Geometry {
            channels,
            h,
            w,
            oh,
            ow,
            stride: stride[0],
            top,
            left,
        };
        Some(Depthwise3x3 {
            geometry,
            kernel: Arc::new(kernel.clone().into_shape(&[channels, TAPS]).ok()?),
            bias: Arc::new(bias),
            low: None,
            high: None,
        })
    }
}

impl Depthwise3x3 {
    /// Convolves every plane of `data` on the vector unit found at run time.
    fn run(&self, data: Data<'_>, scratch: &mut Scratch) -> TractResult<()> {
        let g = self.geometry;
        let kernel = self.kernel.try_as_plain_ram()?;
        let bias = self.bias.try_as_plain_ram()?;
        Arch::new().dispatch(Planes {
            g,
            data,
            kernel: kernel.as_slice::<f32>()?,
            bias: bias.as_slice::<f32>()?,
            low: self.low.map(f32::from_bits),
            high: self.high.map(f32::from_bits),
            scratch: scratch.planes(g.scratch_len()),
        });
        Ok(())
    }
}

/// Where an evaluation reads and writes.
enum Data<'a> {
    /// A fresh output tensor.
    Apart {
        input: &'a [f32],
        output: &'a mut [f32],
    },
    /// The outputs over the input's planes (same shape, and the plan held
    /// no other reference to the input): each channel's plane is copied
    /// into the scratch before its outputs are written over it, so nothing
    /// still to be read is overwritten — and no output tensor is allocated
    /// and zero-filled (the fills were a tenth of a frame, s43).
    InPlace(&'a mut [f32]),
}

/// One evaluation: every channel of every image.
struct Planes<'a> {
    g: Geometry,
    data: Data<'a>,
    kernel: &'a [f32],
    bias: &'a [f32],
    low: Option<f32>,
    high: Option<f32>,
    /// [`Geometry::scratch_len`] floats, zero where the padding is.
    scratch: &'a mut [f32],
}

impl WithSimd for Planes<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        convolve(simd, self);
    }
}

/// Inlined into [`WithSimd::with_simd`], so compiled once per vector unit.
#[inline(always)]
fn convolve<S: Simd>(simd: S, p: Planes<'_>) {
    let g = p.g;
    let (ph, pw) = g.padded();
    let (low, high) = (p.low, p.high);
    // The border stays zero: each channel overwrites the same interior, of
    // the whole plane at stride 1, of its even and odd columns at stride 2.
    let stride_two = g.stride == 2;
    let (pe, po) = (g.split_pitch(), pw / 2);
    let (grid, flat) = p.scratch.split_at_mut(g.grid_len());
    let (padded, split) = grid.split_at_mut(if stride_two { 0 } else { ph * pw });
    let (even, odd) = split.split_at_mut(if stride_two { ph * pe } else { 0 });
    let rows = g.h.min(ph - g.top);
    let cols = g.w.min(pw - g.left);
    let (plane_len, out_len) = (g.h * g.w, g.oh * g.ow);
    let mut data = p.data;
    let planes = match &data {
        Data::Apart { input, .. } => input.len() / plane_len,
        Data::InPlace(both) => both.len() / plane_len,
    };
    for (i, (k, &b)) in (0..planes).zip(
        p.kernel
            .chunks_exact(TAPS)
            .cycle()
            .zip(p.bias.iter().cycle()),
    ) {
        let k: [f32; TAPS] = [k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8]];
        let plane = match &data {
            Data::Apart { input, .. } => &input[i * plane_len..][..plane_len],
            Data::InPlace(both) => &both[i * plane_len..][..plane_len],
        };
        for (y, row) in plane.chunks_exact(g.w).take(rows).enumerate() {
            let py = y + g.top;
            if stride_two {
                let (e, o) = (&mut even[py * pe..][..pe], &mut odd[py * pe..][..po]);
                split_row(&row[..cols], g.left, e, o);
            } else {
                copy_row(&mut padded[py * pw + g.left..][..cols], &row[..cols]);
            }
        }
        // The plane is in the scratch: in place, its outputs may land on it.
        let out = match &mut data {
            Data::Apart { output, .. } => &mut output[i * out_len..][..out_len],
            Data::InPlace(both) => &mut both[i * out_len..][..out_len],
        };
        match g.run_len() {
            Some(run) if !stride_two => {
                // Output (oy, ox) sits at oy·pw + ox; its tap (dy, dx) at
                // dy·pw + dx further on.
                let taps_at = tap_grid(|dy, dx| &padded[dy * pw + dx..][..run]);
                taps(simd, &mut flat[..run], taps_at, &k, b, low, high);
                for (oy, out_row) in out.chunks_exact_mut(g.ow).enumerate() {
                    copy_row(out_row, &flat[oy * pw..][..g.ow]);
                }
                continue;
            }
            Some(run) => {
                // Output (oy, ox) sits at oy·2pe + ox; its tap (dy, dx) in
                // input row 2·oy + dy, column 2·ox + dx: even[ox],
                // odd[ox], even[ox + 1] of that row, dy·pe further on.
                let taps_at = tap_grid(|dy, dx| match dx {
                    0 => &even[dy * pe..][..run],
                    1 => &odd[dy * pe..][..run],
                    _ => &even[dy * pe + 1..][..run],
                });
                taps(simd, &mut flat[..run], taps_at, &k, b, low, high);
                for (oy, out_row) in out.chunks_exact_mut(g.ow).enumerate() {
                    copy_row(out_row, &flat[oy * 2 * pe..][..g.ow]);
                }
                continue;
            }
            None => {}
        }
        if !stride_two {
            for (oy, out_row) in out.chunks_exact_mut(g.ow).enumerate() {
                let taps_at = tap_grid(|dy, dx| &padded[(oy + dy) * pw + dx..][..g.ow]);
                taps(simd, out_row, taps_at, &k, b, low, high);
            }
        } else {
            for (oy, out_row) in out.chunks_exact_mut(g.ow).enumerate() {
                // Input column 2·ox + dx: even[ox], odd[ox], even[ox + 1].
                let e = |dy: usize, dx: usize| &even[(2 * oy + dy) * pe + dx..][..g.ow];
                let o = |dy: usize| &odd[(2 * oy + dy) * pe..][..g.ow];
                let taps_at = tap_grid(|dy, dx| match dx {
                    0 => e(dy, 0),
                    1 => o(dy),
                    _ => e(dy, 1),
                });
                taps(simd, out_row, taps_at, &k, b, low, high);
            }
        }
    }
}

/// The nine taps in tract's order, kernel row by kernel row: `at(dy, dx)`
/// for dy, dx in 0..3.
#[inline(always)]
fn tap_grid<'a>(at: impl Fn(usize, usize) -> &'a [f32]) -> [&'a [f32]; TAPS] {
    // Written out: `array::from_fn` stayed a call (measured, s42).
    [
        at(0, 0),
        at(0, 1),
        at(0, 2),
        at(1, 0),
        at(1, 1),
        at(1, 2),
        at(2, 0),
        at(2, 1),
        at(2, 2),
    ]
}

/// `out[i] = b + k0·t0[i] + … + k8·t8[i]`, summed in that order (a
/// multiply then an add per tap, as tract), then tract's Clip, `max(low)`
/// then `min(high)`. Written in the unit's vectors: left to the compiler,
/// the loop over a row of 80 was one unrolled block of 64 and a scalar
/// tail of 16 (s43). A row's last part vector is the whole vector ending
/// at its end, recomputing outputs before it with the same values.
#[inline(always)]
fn taps<S: Simd>(
    simd: S,
    out: &mut [f32],
    t: [&[f32]; TAPS],
    k: &[f32; TAPS],
    b: f32,
    low: Option<f32>,
    high: Option<f32>,
) {
    let lanes = S::F32_LANES;
    let n = out.len();
    let t = t.map(|s| &s[..n]);
    if n < lanes {
        for i in 0..n {
            let mut s = b;
            for (k, t) in k.iter().zip(&t) {
                s += k * t[i];
            }
            out[i] = clamp(s, low, high);
        }
        return;
    }
    let kv = k.map(|w| simd.splat_f32s(w));
    let (bv, lv, hv) = (
        simd.splat_f32s(b),
        low.map(|v| simd.splat_f32s(v)),
        high.map(|v| simd.splat_f32s(v)),
    );
    let load = |s: &[f32], i: usize| S::as_simd_f32s(&s[i..i + lanes]).0[0];
    let mut i = 0;
    loop {
        let at = i.min(n - lanes);
        let mut s = bv;
        for (k, t) in kv.iter().zip(&t) {
            s = simd.add_f32s(s, simd.mul_f32s(*k, load(t, at)));
        }
        if let Some(l) = lv {
            s = simd.max_f32s(s, l);
        }
        if let Some(h) = hv {
            s = simd.min_f32s(s, h);
        }
        S::as_mut_simd_f32s(&mut out[at..at + lanes]).0[0] = s;
        if at + lanes == n {
            break;
        }
        i += lanes;
    }
}

/// tract's Clip on one value: `max(low)` then `min(high)`.
#[inline(always)]
fn clamp(v: f32, low: Option<f32>, high: Option<f32>) -> f32 {
    let v = low.map_or(v, |low| v.max(low));
    high.map_or(v, |high| v.min(high))
}

impl Op for Depthwise3x3 {
    fn name(&self) -> StaticName {
        "LatchdDepthwise3x3".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Depthwise3x3 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext<'_>, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.eval_with(&mut Scratch::default(), inputs)
    }

    fn state(&self, _ctx: &EvalContext<'_>) -> TractResult<Option<Box<dyn OpState>>> {
        Ok(Some(Box::new(ScratchState::<Self>::new())))
    }
}

impl UsesScratch for Depthwise3x3 {
    fn eval_with(&self, scratch: &mut Scratch, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let g = self.geometry;
        let n = batch(&input, "depthwise 3×3", [g.channels, g.h, g.w])?;
        let same_shape = (g.oh, g.ow) == (g.h, g.w);
        // tract hands its last consumer the only reference to a value.
        let input = match Arc::try_unwrap(input.into_arc_tensor()) {
            Ok(mut both) if same_shape => {
                {
                    let mut view = both.try_as_plain_ram_mut()?;
                    self.run(Data::InPlace(view.as_slice_mut::<f32>()?), scratch)?;
                }
                return Ok(tvec!(both.into_tvalue()));
            }
            Ok(alone) => Arc::new(alone),
            Err(shared) => shared,
        };
        let shape = output_shape(input.rank(), n, [g.channels, g.oh, g.ow]);
        let mut output = Tensor::zero::<f32>(&shape)?;
        {
            let plain = input.try_as_plain_ram()?;
            let mut out = output.try_as_plain_ram_mut()?;
            let data = Data::Apart {
                input: plain.as_slice::<f32>()?,
                output: out.as_slice_mut::<f32>()?,
            };
            self.run(data, scratch)?;
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Depthwise3x3 {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let g = self.geometry;
        Ok(tvec!(output_fact(
            inputs[0],
            "depthwise 3×3",
            [g.channels, g.oh, g.ow]
        )?))
    }
}

/// Replaces every convolution of `model` that [`Depthwise3x3`] computes
/// with it; returns how many it replaced. The input shape must be concrete
/// (the plan is optimised for one shape).
pub(super) fn replace_depthwise(model: &mut TypedModel) -> TractResult<usize> {
    replace_convs(model, Depthwise3x3::replacing)
}

impl ClampFold for Depthwise3x3 {
    fn bounds(&self) -> (Option<u32>, Option<u32>) {
        (self.low, self.high)
    }

    fn with_bounds(&self, low: Option<u32>, high: Option<u32>) -> Self {
        Depthwise3x3 {
            low,
            high,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::rewrite::fuse_clamps;
    use super::super::test_graphs::{self, run, tensor, values};
    use super::*;
    use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};

    fn conv(channels: usize, stride: usize, before: usize, after: usize) -> Conv {
        Conv {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec![3, 3],
                padding: PaddingSpec::Explicit(tvec![before, before], tvec![after, after]),
                dilations: None,
                strides: Some(tvec![stride, stride]),
                input_channels: channels,
                output_channels: channels,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: channels,
            q_params: None,
        }
    }

    /// The model: input → depthwise conv (constant kernel and bias).
    fn model(conv: Conv, shape: &[usize]) -> TypedModel {
        // The channel axis: N C H W, or C H W.
        let c = shape[shape.len() - 3];
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact(shape)).expect("a source");
        let k = model
            .add_const("k", tensor(&[c, 1, 3, 3], 0x1234_5678))
            .expect("a kernel");
        let b = model
            .add_const("b", tensor(&[c], 0x0bad_cafe))
            .expect("a bias");
        let out = model.wire_node("dw", conv, &[x, k, b]).expect("wired");
        model.select_output_outlets(&out).expect("an output");
        model
    }

    #[test]
    fn the_op_gives_tracts_values_on_every_shape_the_models_use() {
        // (shape, stride): MobileFaceNet's and YuNet's depthwise layers at
        // the sizes latchd runs them, and odd sizes.
        let cases = [
            ([1, 64, 56, 56], 1),
            ([1, 128, 56, 56], 2),
            ([1, 128, 28, 28], 1),
            ([1, 256, 28, 28], 2),
            ([1, 256, 14, 14], 1),
            ([1, 512, 14, 14], 2),
            ([1, 512, 7, 7], 1),
            ([1, 16, 160, 160], 1),
            ([1, 64, 80, 80], 1),
            ([1, 64, 20, 20], 1),
            ([2, 3, 7, 9], 1),
            ([2, 3, 7, 9], 2),
            ([1, 2, 2, 3], 2),
            ([1, 1, 1, 1], 1),
        ];
        for (shape, stride) in cases {
            let x = tensor(&shape, 0x9e37_79b9);
            let mut ours = model(conv(shape[1], stride, 1, 1), &shape);
            assert_eq!(replace_depthwise(&mut ours).expect("patched"), 1);
            let (our_shape, our_values) = run(ours, &x);
            let (their_shape, their_values) = run(model(conv(shape[1], stride, 1, 1), &shape), &x);
            assert_eq!(our_shape, their_shape, "{shape:?} stride {stride}");
            // Equal values (a zero's sign may differ: see the module docs).
            let differ = our_values
                .iter()
                .zip(&their_values)
                .position(|(a, b)| a != b);
            assert_eq!(differ, None, "{shape:?} stride {stride}: first difference");
        }
    }

    #[test]
    fn an_input_the_plan_still_holds_is_left_as_it_was() {
        // The depthwise output is written over its input only when the op
        // holds the input's one reference. Here the input is also the
        // model's second output, so the op must write elsewhere.
        for (shape, stride) in [([1, 8, 12, 12], 1), ([1, 4, 16, 16], 1), ([1, 4, 9, 9], 2)] {
            let x = tensor(&shape, 0x1b87_3593);
            let both = |replace: bool| {
                let mut m = model(conv(shape[1], stride, 1, 1), &shape);
                let dw = m.output_outlets().expect("an output")[0];
                m.select_output_outlets(&[dw, m.input_outlets().expect("an input")[0]])
                    .expect("two outputs");
                if replace {
                    assert_eq!(replace_depthwise(&mut m).expect("patched"), 1);
                }
                let out = test_graphs::plan_run(m, &x);
                (out[0].clone().into_tensor(), out[1].clone().into_tensor())
            };
            let (ours, kept) = both(true);
            assert_eq!(kept, x, "{shape:?}: the input was overwritten");
            assert_eq!(ours, both(false).0, "{shape:?}: tract's values");
        }
    }

    #[test]
    fn the_in_place_path_writes_over_an_input_no_one_else_holds() {
        // What the models do: the input's last reader is the op, so its
        // tensor becomes the output (same buffer, no allocation).
        let g = Geometry {
            channels: 3,
            h: 5,
            w: 7,
            oh: 5,
            ow: 7,
            stride: 1,
            top: 1,
            left: 1,
        };
        let input = values(2 * g.channels * g.h * g.w, 21);
        let kernel = values(g.channels * TAPS, 22);
        let bias = values(g.channels, 23);
        let convolve = |data| {
            Arch::new().dispatch(Planes {
                g,
                data,
                kernel: &kernel,
                bias: &bias,
                low: None,
                high: None,
                scratch: &mut vec![0f32; g.scratch_len()],
            })
        };
        let mut apart = vec![0f32; input.len()];
        convolve(Data::Apart {
            input: &input,
            output: &mut apart,
        });
        let mut in_place = input.clone();
        convolve(Data::InPlace(&mut in_place));
        assert_eq!(in_place, apart);
        assert_ne!(in_place, input);
    }

    #[test]
    fn asymmetric_and_valid_padding_give_tracts_values() {
        for (before, after, stride) in [(0, 0, 1), (0, 0, 2), (0, 1, 2), (1, 0, 1), (2, 2, 1)] {
            let shape = [1, 4, 11, 10];
            let x = tensor(&shape, 0x2545_f491);
            let mut ours = model(conv(4, stride, before, after), &shape);
            assert_eq!(replace_depthwise(&mut ours).expect("patched"), 1);
            let (our_shape, our_values) = run(ours, &x);
            let (their_shape, their_values) =
                run(model(conv(4, stride, before, after), &shape), &x);
            assert_eq!(
                our_shape, their_shape,
                "pads {before}/{after} stride {stride}"
            );
            assert_eq!(
                our_values, their_values,
                "pads {before}/{after} stride {stride}"
            );
        }
    }

    #[test]
    fn only_three_by_three_depthwise_convolutions_are_replaced() {
        let shape = [1, 4, 16, 16];
        let stride_three = conv(4, 3, 1, 1);
        let mut dilated = conv(4, 1, 1, 1);
        dilated.pool_spec.dilations = Some(tvec![2, 2]);
        let mut grouped = conv(4, 1, 1, 1);
        grouped.group = 2;
        let mut nhwc = conv(4, 1, 1, 1);
        nhwc.pool_spec.data_format = DataFormat::NHWC;
        for (name, op) in [
            ("stride 3", stride_three),
            ("dilated", dilated),
            ("two groups", grouped),
            ("nhwc", nhwc),
        ] {
            let mut m = TypedModel::default();
            let x = m.add_source("x", f32::fact(shape)).expect("a source");
            let k = m
                .add_const("k", tensor(&[4, 1, 3, 3], 1))
                .expect("a kernel");
            let b = m.add_const("b", tensor(&[4], 2)).expect("a bias");
            if m.wire_node("dw", op, &[x, k, b]).is_ok() {
                assert_eq!(replace_depthwise(&mut m).expect("patched"), 0, "{name}");
            }
        }
        let mut m = model(conv(4, 1, 1, 1), &shape);
        assert_eq!(replace_depthwise(&mut m).expect("patched"), 1);
        let out = m.output_outlets().expect("an output")[0];
        assert!(m.node(out.node).op_is::<Depthwise3x3>());
    }

    /// input → depthwise → one bin op by a constant per `(name, bound)`.
    fn clamped(clamps: &[(&str, f32)], shape: [usize; 4]) -> TypedModel {
        let mut model = model(conv(shape[1], 1, 1, 1), &shape);
        let wire = model.output_outlets().expect("an output")[0];
        let wire = test_graphs::clamps(&mut model, wire, clamps, 4);
        model.select_output_outlets(&[wire]).expect("an output");
        model
    }

    #[test]
    fn clip_and_relu_are_folded_in_with_tracts_values() {
        // One plane as one run (12 wide), and row by row (16 wide).
        for shape in [[1, 8, 12, 12], [1, 4, 16, 16]] {
            let x = tensor(&shape, 0x7f4a_7c15);
            for (clamps, folded) in [
                (&[("max", 0.0), ("min", 0.5)][..], 2),
                (&[("max", 0.0)][..], 1),
                (&[("min", 0.5)][..], 1),
                // A Min before a Max is not Clip's order: only the Min folds.
                (&[("min", 0.5), ("max", 0.0)][..], 1),
            ] {
                let mut ours = clamped(clamps, shape);
                replace_depthwise(&mut ours).expect("replaced");
                assert_eq!(
                    fuse_clamps::<Depthwise3x3>(&mut ours).expect("fused"),
                    folded,
                    "{clamps:?}"
                );
                let (_, our_values) = run(ours, &x);
                let (_, their_values) = run(clamped(clamps, shape), &x);
                assert_eq!(our_values, their_values, "{shape:?} {clamps:?}");
            }
        }
    }

    #[test]
    fn a_batch_of_one_laid_out_chw_gives_tracts_values() {
        // tract's decluttering turns NCHW with N = 1 into CHW.
        let shape = [16, 20, 20];
        let x = tensor(&shape, 0x3c6e_f372);
        let chw = |stride| {
            let mut op = conv(16, stride, 1, 1);
            op.pool_spec.data_format = DataFormat::CHW;
            model(op, &shape)
        };
        for stride in [1, 2] {
            let mut ours = chw(stride);
            assert_eq!(replace_depthwise(&mut ours).expect("patched"), 1);
            assert_eq!(run(ours, &x), run(chw(stride), &x), "stride {stride}");
        }
    }

    #[test]
    fn every_vector_unit_gives_the_same_values() {
        // The plan runs on whatever unit `Arch::new()` finds; the build
        // machine's is only one of them. Each path pulp has here, forced.
        let g = Geometry {
            channels: 6,
            h: 21,
            w: 37,
            oh: 21,
            ow: 37,
            stride: 1,
            top: 1,
            left: 1,
        };
        let strided = Geometry {
            oh: 11,
            ow: 19,
            stride: 2,
            ..g
        };
        let whole = Geometry { w: 32, ow: 32, ..g };
        let narrow = Geometry {
            h: 13,
            w: 11,
            oh: 7,
            ow: 6,
            stride: 2,
            ..g
        };
        for g in [g, strided, whole, narrow] {
            let input = values(g.channels * g.h * g.w, 11);
            let kernel = values(g.channels * TAPS, 12);
            let bias = values(g.channels, 13);
            let run_on = |unit: &dyn Fn(Planes<'_>)| {
                let mut out = vec![0f32; g.channels * g.oh * g.ow];
                unit(Planes {
                    g,
                    data: Data::Apart {
                        input: &input,
                        output: &mut out,
                    },
                    kernel: &kernel,
                    bias: &bias,
                    low: Some(-0.5),
                    high: Some(1.5),
                    scratch: &mut vec![0f32; g.scratch_len()],
                });
                out
            };
            let scalar = run_on(&|p| Simd::vectorize(pulp::Scalar::new(), p));
            assert_eq!(run_on(&|p| Arch::new().dispatch(p)), scalar, "{g:?}");
            #[cfg(target_arch = "x86_64")]
            if let Some(v3) = pulp::x86::V3::try_new() {
                assert_eq!(run_on(&|p| Simd::vectorize(v3, p)), scalar, "{g:?}");
            }
        }
    }
}
