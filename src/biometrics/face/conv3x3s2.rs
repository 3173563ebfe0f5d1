//! The models' first convolution — the image's 3 colour planes in, 3×3,
//! stride 2 — run by our own op instead of tract's.
//!
//! Why: per-op timing of YuNet's plan (issue 19, session s42) put tract
//! 0.23.9's `DirectSpatialConv` for its first layer (3 → 16 channels,
//! 320×320 → 160×160) at 1.05 of 8.6 ms — 10 GMAC/s, where the matrix
//! products after it run at 40 to 80 — plus 0.09 ms for the `Relu` after
//! it in a pass of its own. MobileFaceNet's first layer (3 → 64, 112 →
//! 56) goes through im2col and a matrix product at 17 GMAC/s.
//!
//! Here each input plane is split once per evaluation into its even and
//! odd columns, zero-bordered, which every output channel then shares. An
//! output row is then, per input channel, nine contiguous slices of those
//! planes (input column 2·x + dx is even[x], odd[x] or even[x + 1]), summed
//! four vectors at a time in registers with fused multiply-adds, the bias
//! first and the taps in tract's order (input channel, then kernel row,
//! then column); the clamp after the convolution is folded in
//! (`rewrite.rs`) and applied before the store. The loop is compiled per
//! vector unit and picked at run time (`pulp`), in safe code.
//!
//! Fused multiply-adds round once where tract's kernel may round twice, so
//! the values are tract's to within float rounding, not bit for bit: the
//! tests bound the difference, and `tests/it/face_accuracy.rs` holds the
//! scores to the issue's ±0.01.

use pulp::{Arch, Simd, WithSimd};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::conv::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::planes::{batch, output_fact, output_shape, split_row};
use super::rewrite::{bias_per_channel, replace_convs, ClampFold};
use super::scratch::{Scratch, ScratchState, UsesScratch};

const TAPS: usize = 9;
/// More input channels than this is not a first layer: the split planes
/// would no longer stay in cache, and tract's matrix products win there.
const MAX_INPUT_CHANNELS: usize = 4;

/// The concrete shape the plan was optimised for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Geometry {
    inputs: usize,
    outputs: usize,
    /// Input plane.
    h: usize,
    w: usize,
    /// Output plane.
    oh: usize,
    ow: usize,
    /// Padding above and left of the input.
    top: usize,
    left: usize,
}

impl Geometry {
    /// The zero-bordered plane every output reads from, (oh − 1)·2 + 3 rows
    /// of (ow − 1)·2 + 3, as its even and odd columns: rows, even width,
    /// odd width.
    fn split(&self) -> (usize, usize, usize) {
        let pw = (self.ow - 1) * 2 + 3;
        ((self.oh - 1) * 2 + 3, pw.div_ceil(2), pw / 2)
    }

    /// Floats of every input channel's split plane.
    fn split_len(&self) -> usize {
        let (ph, pe, po) = self.split();
        self.inputs * ph * (pe + po)
    }
}

/// Convolution with one group, kernel 3×3, stride 2 on both axes, no
/// dilation, padding of at most 2 before, at most [`MAX_INPUT_CHANNELS`]
/// input channels, (N)CHW f32, weights and bias constant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Conv3x3S2 {
    geometry: Geometry,
    /// `outputs × inputs × 9`: tract's OIHW order.
    kernel: Arc<Tensor>,
    /// `outputs`.
    bias: Arc<Tensor>,
    /// A clamp folded in from the graph (`f32` bits; see `rewrite.rs`).
    low: Option<u32>,
    high: Option<u32>,
}

impl Conv3x3S2 {
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
        let (inputs, h, w) = match (spec.data_format, input) {
            (DataFormat::NCHW, &[_, c, h, w]) | (DataFormat::CHW, &[c, h, w]) => (c, h, w),
            _ => return None,
        };
        let outputs = spec.output_channels;
        if conv.q_params.is_some()
            || conv.kernel_fmt != KernelFormat::OIHW
            || conv.group != 1
            || spec.kernel_shape[..] != [3, 3]
            || spec.dilations()[..] != [1, 1]
            || spec.strides()[..] != [2, 2]
            || !(1..=MAX_INPUT_CHANNELS).contains(&inputs)
            || spec.input_channels != inputs
            || kernel.datum_type() != f32::datum_type()
            || kernel.shape() != [outputs, inputs, 3, 3]
        {
            return None;
        }
        let bias = bias_per_channel(bias, outputs)?;
        let padding = spec.computed_padding(&[h, w]);
        let (top, left) = (padding[0].pad_before, padding[1].pad_before);
        let (oh, ow) = (padding[0].convoluted, padding[1].convoluted);
        if oh == 0 || ow == 0 || top > 2 || left > 2 {
            return None;
        }
        Some(Conv3x3S2 {
            geometry: Geometry {
                inputs,
                outputs,
                h,
                w,
                oh,
                ow,
                top,
                left,
            },
            kernel: Arc::new(kernel.clone().into_shape(&[outputs, inputs * TAPS]).ok()?),
            bias: Arc::new(bias),
            low: None,
            high: None,
        })
    }
}

/// One evaluation: every image of the batch.
struct Images<'a> {
    g: Geometry,
    input: &'a [f32],
    output: &'a mut [f32],
    kernel: &'a [f32],
    bias: &'a [f32],
    low: Option<f32>,
    high: Option<f32>,
    /// Every input channel's split plane: `inputs ×` [`Geometry::split`]'s
    /// rows × (even + odd width) floats, zero where the padding is.
    split: &'a mut [f32],
}

impl WithSimd for Images<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        convolve(simd, self);
    }
}

/// Inlined into [`WithSimd::with_simd`], so compiled once per vector unit.
#[inline(always)]
fn convolve<S: Simd>(simd: S, p: Images<'_>) {
    let g = p.g;
    let (ph, pe, po) = g.split();
    // Per input channel, its even then its odd columns; the border stays
    // zero, as each image overwrites the same interior.
    let plane = ph * (pe + po);
    let split = p.split;
    let rows = g.h.min(ph - g.top);
    let cols = g.w.min(pe + po - g.left);
    let image = g.inputs * g.h * g.w;
    for (input, output) in p
        .input
        .chunks_exact(image)
        .zip(p.output.chunks_exact_mut(g.outputs * g.oh * g.ow))
    {
        for (channel, s) in input
            .chunks_exact(g.h * g.w)
            .zip(split.chunks_exact_mut(plane))
        {
            let (even, odd) = s.split_at_mut(ph * pe);
            for (y, row) in channel.chunks_exact(g.w).take(rows).enumerate() {
                let py = y + g.top;
                let e = &mut even[py * pe..][..pe];
                let o = &mut odd[py * po..][..po];
                split_row(&row[..cols], g.left, e, o);
            }
        }
        // Output row by output row, every output channel: the few input
        // rows it reads stay in the first-level cache.
        // Four output channels at a time: each source vector loaded once
        // for all four (loads were the loop's limit at one channel, s43).
        let (plane_out, taps) = (g.oh * g.ow, g.inputs * TAPS);
        let whole = g.outputs / 4 * 4;
        let (four, ones) = output.split_at_mut(whole * plane_out);
        let (k4, k1) = p.kernel.split_at(whole * taps);
        let (b4, b1) = p.bias.split_at(whole);
        let mut sources: Vec<&[f32]> = Vec::with_capacity(taps);
        for oy in 0..g.oh {
            sources.clear();
            for s in split.chunks_exact(plane) {
                let (even, odd) = s.split_at(ph * pe);
                for dy in 0..3 {
                    let r = 2 * oy + dy;
                    sources.push(&even[r * pe..][..g.ow]);
                    sources.push(&odd[r * po..][..g.ow]);
                    sources.push(&even[r * pe + 1..][..g.ow]);
                }
            }
            let rows = Rows {
                sources: &sources,
                row: oy * g.ow,
                plane: plane_out,
                low: p.low,
                high: p.high,
            };
            for ((tile, k), b) in four
                .chunks_exact_mut(4 * plane_out)
                .zip(k4.chunks_exact(4 * taps))
                .zip(b4.chunks_exact(4))
            {
                sum_rows::<S, 4>(simd, &rows, tile, k, b, g.ow);
            }
            for ((tile, k), b) in ones
                .chunks_exact_mut(plane_out)
                .zip(k1.chunks_exact(taps))
                .zip(b1.chunks_exact(1))
            {
                sum_rows::<S, 1>(simd, &rows, tile, k, b, g.ow);
            }
        }
    }
}

/// What every output channel's row `row` reads, and where it goes.
struct Rows<'a> {
    /// The input row slices in tract's order (input channel, kernel row,
    /// kernel column).
    sources: &'a [&'a [f32]],
    /// The row's offset in an output plane.
    row: usize,
    /// An output plane's length.
    plane: usize,
    low: Option<f32>,
    high: Option<f32>,
}

/// Row `r.row` of the `C` output planes in `tile`:
/// `out[c][i] = clamp(b[c] + Σ k[c][t]·sources[t][i])`, summed in the
/// order of the sources.
#[inline(always)]
fn sum_rows<S: Simd, const C: usize>(
    simd: S,
    r: &Rows<'_>,
    tile: &mut [f32],
    k: &[f32],
    b: &[f32],
    n: usize,
) {
    let lanes = S::F32_LANES;
    let clamp = |v: S::f32s| {
        let v = match r.low {
            Some(l) => simd.max_f32s(v, simd.splat_f32s(l)),
            None => v,
        };
        match r.high {
            Some(h) => simd.min_f32s(v, simd.splat_f32s(h)),
            None => v,
        }
    };
    if n < lanes {
        for c in 0..C {
            let mut acc = simd.splat_f32s(b[c]);
            let taps = r.sources.len();
            for (s, &kt) in r.sources.iter().zip(&k[c * taps..][..taps]) {
                let x = simd.partial_load_f32s(&s[..n]);
                acc = simd.mul_add_e_f32s(simd.splat_f32s(kt), x, acc);
            }
            let out = &mut tile[c * r.plane + r.row..][..n];
            simd.partial_store_f32s(out, clamp(acc));
        }
        return;
    }
    // Whole vectors, three at a time in registers (with four channels, 12
    // accumulators: within AVX2's 16 registers); a row's last part vector
    // is computed as the whole vector ending at the row's end, which
    // rewrites the outputs before it with the same values — no masked
    // loads (pulp makes them out-of-line calls). Four left are two blocks
    // of two.
    let vectors = n.div_ceil(lanes);
    let start = |v: usize| (v * lanes).min(n - lanes);
    let mut v = 0;
    while v < vectors {
        match vectors - v {
            1 => block::<S, C, 1>(simd, r, tile, k, b, [start(v)], &clamp),
            2 | 4 => block::<S, C, 2>(simd, r, tile, k, b, [start(v), start(v + 1)], &clamp),
            _ => block::<S, C, 3>(
                simd,
                r,
                tile,
                k,
                b,
                [start(v), start(v + 1), start(v + 2)],
                &clamp,
            ),
        }
        v += if vectors - v == 4 { 2 } else { 3 };
    }
}

/// `N` vectors of `C` output rows, starting at `at`, summed in registers.
#[inline(always)]
fn block<S: Simd, const C: usize, const N: usize>(
    simd: S,
    r: &Rows<'_>,
    tile: &mut [f32],
    k: &[f32],
    b: &[f32],
    at: [usize; N],
    clamp: &impl Fn(S::f32s) -> S::f32s,
) {
    let lanes = S::F32_LANES;
    let mut acc: [[S::f32s; N]; C] = std::array::from_fn(|c| [simd.splat_f32s(b[c]); N]);
    let taps = r.sources.len();
    let k: [&[f32]; C] = std::array::from_fn(|c| &k[c * taps..][..taps]);
    for (t, s) in r.sources.iter().enumerate() {
        let x: [S::f32s; N] =
            std::array::from_fn(|j| S::as_simd_f32s(&s[at[j]..at[j] + lanes]).0[0]);
        for (acc, k) in acc.iter_mut().zip(&k) {
            let kv = simd.splat_f32s(k[t]);
            for (a, &x) in acc.iter_mut().zip(&x) {
                *a = simd.mul_add_e_f32s(kv, x, *a);
            }
        }
    }
    for (c, acc) in acc.iter().enumerate() {
        let out = &mut tile[c * r.plane + r.row..];
        for (&a, &j) in acc.iter().zip(&at) {
            S::as_mut_simd_f32s(&mut out[j..j + lanes]).0[0] = clamp(a);
        }
    }
}

impl Op for Conv3x3S2 {
    fn name(&self) -> StaticName {
        "LatchdConv3x3S2".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Conv3x3S2 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext<'_>, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.eval_with(&mut Scratch::default(), inputs)
    }

    fn state(&self, _ctx: &EvalContext<'_>) -> TractResult<Option<Box<dyn OpState>>> {
        Ok(Some(Box::new(ScratchState::<Self>::new())))
    }
}

impl UsesScratch for Conv3x3S2 {
    fn eval_with(&self, scratch: &mut Scratch, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let g = self.geometry;
        let n = batch(&input, "3×3 stride-2 convolution", [g.inputs, g.h, g.w])?;
        let shape = output_shape(input.rank(), n, [g.outputs, g.oh, g.ow]);
        let mut output = Tensor::zero::<f32>(&shape)?;
        {
            let plain = input.try_as_plain_ram()?;
            let mut out = output.try_as_plain_ram_mut()?;
            let kernel = self.kernel.try_as_plain_ram()?;
            let bias = self.bias.try_as_plain_ram()?;
            Arch::new().dispatch(Images {
                g,
                input: plain.as_slice::<f32>()?,
                output: out.as_slice_mut::<f32>()?,
                kernel: kernel.as_slice::<f32>()?,
                bias: bias.as_slice::<f32>()?,
                low: self.low.map(f32::from_bits),
                high: self.high.map(f32::from_bits),
                split: scratch.planes(g.split_len()),
            });
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Conv3x3S2 {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let g = self.geometry;
        Ok(tvec!(output_fact(
            inputs[0],
            "3×3 stride-2 convolution",
            [g.outputs, g.oh, g.ow]
        )?))
    }
}

impl ClampFold for Conv3x3S2 {
    fn bounds(&self) -> (Option<u32>, Option<u32>) {
        (self.low, self.high)
    }

    fn with_bounds(&self, low: Option<u32>, high: Option<u32>) -> Self {
        Conv3x3S2 {
            low,
            high,
            ..self.clone()
        }
    }
}

/// Replaces every convolution of `model` that [`Conv3x3S2`] computes with
/// it; returns how many it replaced. The input shape must be concrete.
pub(super) fn replace_first_convs(model: &mut TypedModel) -> TractResult<usize> {
    replace_convs(model, Conv3x3S2::replacing)
}

#[cfg(test)]
mod tests {
    use super::super::rewrite::fuse_clamps;
    use super::super::test_graphs::{self, run, tensor, values};
    use super::*;
    use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};

    fn conv(inputs: usize, outputs: usize, stride: usize, before: usize, after: usize) -> Conv {
        Conv {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec![3, 3],
                padding: PaddingSpec::Explicit(tvec![before, before], tvec![after, after]),
                dilations: None,
                strides: Some(tvec![stride, stride]),
                input_channels: inputs,
                output_channels: outputs,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: 1,
            q_params: None,
        }
    }

    /// input → convolution (constant kernel and bias) → one bin op by a
    /// constant per `(name, bound)`.
    fn model(conv: Conv, shape: &[usize], clamps: &[(&str, f32)]) -> TypedModel {
        let (i, o) = (
            conv.pool_spec.input_channels,
            conv.pool_spec.output_channels,
        );
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact(shape)).expect("a source");
        let k = model
            .add_const("k", tensor(&[o, i, 3, 3], 0x1234_5678))
            .expect("a kernel");
        let b = model
            .add_const("b", tensor(&[o], 0x0bad_cafe))
            .expect("a bias");
        let wire = model.wire_node("conv", conv, &[x, k, b]).expect("wired")[0];
        let wire = test_graphs::clamps(&mut model, wire, clamps, 4);
        model.select_output_outlets(&[wire]).expect("an output");
        model
    }

    /// The largest difference from tract's values, relative to the sum of
    /// the products' magnitudes (what float rounding scales with): 27
    /// products of values within ±2, so a few units in the last place.
    fn assert_close(ours: &[f32], theirs: &[f32], what: &str) {
        assert_eq!(ours.len(), theirs.len(), "{what}");
        let worst = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // |bias| + 27 · 2 · 2 ≤ 110; 110 · 2⁻²³ · a few roundings.
        assert!(worst <= 1e-4, "{what}: off by {worst}");
    }

    #[test]
    fn the_op_gives_tracts_values_on_the_models_first_layers_and_odd_shapes() {
        // (N C H W, outputs, padding before/after): YuNet's and
        // MobileFaceNet's first layers, then odd sizes, widths under one
        // vector, and asymmetric or no padding.
        let cases = [
            ([1, 3, 320, 320], 16, 1, 1),
            ([1, 3, 112, 112], 64, 1, 1),
            ([2, 3, 9, 13], 5, 1, 1),
            ([1, 1, 4, 5], 3, 0, 0),
            ([1, 4, 31, 37], 8, 0, 1),
            ([1, 2, 10, 40], 4, 2, 2),
            ([1, 3, 1, 1], 2, 1, 1),
        ];
        for (shape, outputs, before, after) in cases {
            let x = tensor(&shape, 0x9e37_79b9);
            let make = || model(conv(shape[1], outputs, 2, before, after), &shape, &[]);
            let mut ours = make();
            assert_eq!(
                replace_first_convs(&mut ours).expect("patched"),
                1,
                "{shape:?}"
            );
            let (our_shape, our_values) = run(ours, &x);
            let (their_shape, their_values) = run(make(), &x);
            assert_eq!(our_shape, their_shape, "{shape:?}");
            assert_close(&our_values, &their_values, &format!("{shape:?}"));
        }
    }

    #[test]
    fn relu_and_clip_are_folded_in() {
        let shape = [1, 3, 24, 40];
        let x = tensor(&shape, 0x7f4a_7c15);
        for (clamps, folded) in [
            (&[("max", 0.0), ("min", 0.5)][..], 2),
            (&[("max", 0.0)][..], 1),
            (&[("min", 6.0), ("max", 0.0)][..], 1),
        ] {
            let make = || model(conv(3, 8, 2, 1, 1), &shape, clamps);
            let mut ours = make();
            replace_first_convs(&mut ours).expect("replaced");
            assert_eq!(
                fuse_clamps::<Conv3x3S2>(&mut ours).expect("fused"),
                folded,
                "{clamps:?}"
            );
            let (_, our_values) = run(ours, &x);
            let (_, their_values) = run(make(), &x);
            assert_close(&our_values, &their_values, &format!("{clamps:?}"));
        }
    }

    #[test]
    fn only_first_layers_of_this_kind_are_replaced() {
        let shape = [1, 3, 16, 16];
        let mut stride_one = conv(3, 4, 1, 1, 1);
        stride_one.pool_spec.strides = Some(tvec![1, 1]);
        let mut dilated = conv(3, 4, 2, 1, 1);
        dilated.pool_spec.dilations = Some(tvec![2, 2]);
        let mut nhwc = conv(3, 4, 2, 1, 1);
        nhwc.pool_spec.data_format = DataFormat::NHWC;
        for (name, op, shape) in [
            ("stride 1", stride_one, shape.to_vec()),
            ("dilated", dilated, shape.to_vec()),
            ("nhwc", nhwc, shape.to_vec()),
            ("many inputs", conv(8, 4, 2, 1, 1), vec![1, 8, 16, 16]),
        ] {
            let mut m = TypedModel::default();
            let (i, o) = (op.pool_spec.input_channels, op.pool_spec.output_channels);
            let x = m.add_source("x", f32::fact(&shape)).expect("a source");
            let k = m
                .add_const("k", tensor(&[o, i, 3, 3], 1))
                .expect("a kernel");
            let b = m.add_const("b", tensor(&[o], 2)).expect("a bias");
            if m.wire_node("conv", op, &[x, k, b]).is_ok() {
                assert_eq!(replace_first_convs(&mut m).expect("patched"), 0, "{name}");
            }
        }
    }

    #[test]
    fn every_vector_unit_gives_the_same_values() {
        // Each path pulp has here, forced, against the scalar one: a row of
        // whole blocks, one with a part vector, and one under a vector.
        for (w, ow) in [(128, 64), (75, 38), (9, 5)] {
            let g = Geometry {
                inputs: 3,
                outputs: 4,
                h: 7,
                w,
                oh: 4,
                ow,
                top: 1,
                left: 1,
            };
            let input = values(g.inputs * g.h * g.w, 11);
            let kernel = values(g.outputs * g.inputs * TAPS, 12);
            let bias = values(g.outputs, 13);
            let run_on = |unit: &dyn Fn(Images<'_>)| {
                let mut out = vec![0f32; g.outputs * g.oh * g.ow];
                unit(Images {
                    g,
                    input: &input,
                    output: &mut out,
                    kernel: &kernel,
                    bias: &bias,
                    low: Some(-0.5),
                    high: Some(1.5),
                    split: &mut vec![0f32; g.split_len()],
                });
                out
            };
            let scalar = run_on(&|p| Simd::vectorize(pulp::Scalar::new(), p));
            assert_close(
                &run_on(&|p| Arch::new().dispatch(p)),
                &scalar,
                &format!("{g:?}"),
            );
            #[cfg(target_arch = "x86_64")]
            if let Some(v3) = pulp::x86::V3::try_new() {
                assert_close(
                    &run_on(&|p| Simd::vectorize(v3, p)),
                    &scalar,
                    &format!("{g:?}"),
                );
            }
        }
    }
}
