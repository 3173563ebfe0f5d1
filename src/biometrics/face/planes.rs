//! Rows of an input plane written into the zero-bordered planes our
//! convolutions read (`depthwise.rs`, `conv3x3s2.rs`): whole, or split into
//! even and odd columns for a stride of 2; and the (N)CHW shapes those
//! convolutions take and give.
//!
//! Both are inlined into the per-vector-unit loops that call them, and
//! neither calls `memmove`: a `copy_from_slice` whose length is only known
//! at run time is a call, which costs more than the copy itself for the
//! embedder's 7- to 56-wide rows (measured, s42: the calls were a fifth of
//! the depthwise op's time).

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// The batch size of `input`, (N)CHW, checked against the channels, height
/// and width the op was `planned` for; `what` names the op in errors.
pub(super) fn batch(input: &Tensor, what: &str, planned: [usize; 3]) -> TractResult<usize> {
    let (n, chw) = match *input.shape() {
        [n, c, h, w] => (n, [c, h, w]),
        [c, h, w] => (1, [c, h, w]),
        _ => bail!("{what} wants an (N)CHW input, got {:?}", input.shape()),
    };
    if chw != planned {
        bail!(
            "{what} was planned for {}×{}×{}, got {:?}",
            planned[0],
            planned[1],
            planned[2],
            input.shape()
        );
    }
    Ok(n)
}

/// The output shape for an input of `rank` 3 (CHW) or 4 (NCHW).
pub(super) fn output_shape(rank: usize, n: usize, chw: [usize; 3]) -> TVec<usize> {
    if rank == 4 {
        tvec![n, chw[0], chw[1], chw[2]]
    } else {
        chw.into_iter().collect()
    }
}

/// The output fact for `input`, (N)CHW f32: its batch axis, `chw` after it.
pub(super) fn output_fact(
    input: &TypedFact,
    what: &str,
    chw: [usize; 3],
) -> TractResult<TypedFact> {
    let mut shape: TVec<TDim> = input.shape.iter().cloned().collect();
    if input.datum_type != f32::datum_type() || !(3..=4).contains(&shape.len()) {
        bail!("{what} wants a rank-3 or rank-4 f32 input, got {input:?}");
    }
    let rank = shape.len();
    for (axis, d) in shape[rank - 3..].iter_mut().zip(chw) {
        *axis = d.to_dim();
    }
    Ok(f32::fact(shape))
}

/// Copies `src` into the start of `dst`: 16 floats at a time, then 8, 4
/// and the last few one by one.
#[inline(always)]
pub(super) fn copy_row(dst: &mut [f32], src: &[f32]) {
    let n = src.len();
    let dst = &mut dst[..n];
    let mut i = 0;
    while i + 16 <= n {
        copy_block::<16>(&mut dst[i..], &src[i..]);
        i += 16;
    }
    if i + 8 <= n {
        copy_block::<8>(&mut dst[i..], &src[i..]);
        i += 8;
    }
    if i + 4 <= n {
        copy_block::<4>(&mut dst[i..], &src[i..]);
        i += 4;
    }
    // At most three left: written out, so the compiler does not turn the
    // loop back into a call.
    for (d, s) in dst[i..].iter_mut().zip(&src[i..]).take(3) {
        *d = *s;
    }
}

/// The first `N` floats of `src` into `dst`, as one fixed-size move.
#[inline(always)]
fn copy_block<const N: usize>(dst: &mut [f32], src: &[f32]) {
    let d: &mut [f32; N] = (&mut dst[..N])
        .try_into()
        .unwrap_or_else(|_| unreachable!("a slice of N"));
    let s: &[f32; N] = (&src[..N])
        .try_into()
        .unwrap_or_else(|_| unreachable!("a slice of N"));
    *d = *s;
}

/// Writes `row` into the even and odd columns of its zero-bordered row,
/// `left` columns in: padded column `left + x` is `even[(left + x) / 2]`
/// when even, `odd[(left + x) / 2]` when odd.
#[inline(always)]
pub(super) fn split_row(row: &[f32], left: usize, even: &mut [f32], odd: &mut [f32]) {
    // Input columns alternate between the two, starting with the one
    // `left` lands in.
    let (first, second) = if left.is_multiple_of(2) {
        (&mut even[left / 2..], &mut odd[left / 2..])
    } else {
        (&mut odd[left / 2..], &mut even[left / 2 + 1..])
    };
    for ((a, b), pair) in first
        .iter_mut()
        .zip(second.iter_mut())
        .zip(row.chunks_exact(2))
    {
        *a = pair[0];
        *b = pair[1];
    }
    if row.len() % 2 == 1 {
        first[row.len() / 2] = row[row.len() - 1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_every_length_are_copied_exactly() {
        let src: Vec<f32> = (0..70).map(|i| i as f32 + 0.5).collect();
        for n in 0..=src.len() {
            let mut dst = vec![-1f32; src.len() + 3];
            copy_row(&mut dst, &src[..n]);
            assert_eq!(&dst[..n], &src[..n], "length {n}");
            assert!(
                dst[n..].iter().all(|&v| v == -1.0),
                "length {n}: wrote past"
            );
        }
    }

    #[test]
    fn a_row_lands_in_the_even_and_odd_columns_of_its_padded_row() {
        for left in 0..3 {
            for len in 0..12 {
                let row: Vec<f32> = (1..=len).map(|i| i as f32).collect();
                // The padded row: `left` zeros, the row, one zero after.
                let width: usize = left + len + 1;
                let mut even = vec![0f32; width.div_ceil(2)];
                let mut odd = vec![0f32; width / 2];
                split_row(&row, left, &mut even, &mut odd);
                let padded: Vec<f32> = (0..width)
                    .map(|px| {
                        if px % 2 == 0 {
                            even[px / 2]
                        } else {
                            odd[px / 2]
                        }
                    })
                    .collect();
                let mut expected = vec![0f32; width];
                expected[left..left + len].copy_from_slice(&row);
                assert_eq!(padded, expected, "left {left}, length {len}");
            }
        }
    }
}
