//! Shared plumbing of the hash UDFs: argument type checks and one vectorised kernel that turns a
//! string or binary column into a column of hash renderings. Each function only supplies its
//! algorithm (and truncation).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::ColumnarValue;

use crate::algorithm::{HashKernel, RenderHash, LANES_SLACK};
pub(crate) use crate::bytes::extend_small;
use crate::error::UdfError;
use crate::HashAlgorithm;

/// The input types the hash functions take as they are; anything else is rejected.
pub(crate) fn is_hashable(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::Null
    )
}

/// Coerces the hashed argument: strings and binaries stay as they are, dictionaries of them are
/// unpacked, NULL becomes Utf8, anything else is a clear error naming the type.
pub(crate) fn coerce_hashed(function: &'static str, dt: &DataType) -> Result<DataType> {
    match dt {
        DataType::Null => Ok(DataType::Utf8),
        DataType::Dictionary(_, value) if is_hashable(value) => Ok(value.as_ref().clone()),
        dt if is_hashable(dt) => Ok(dt.clone()),
        other => Err(UdfError::InvalidArgument {
            function,
            message: format!(
                "cannot hash a value of type {other}; expected a string or binary \
                 (cast it first, e.g. CAST(x AS VARCHAR))"
            ),
        }
        .into()),
    }
}

/// Hashes every value of `input` with `algorithm`, keeping at most `truncate_to` characters of
/// each rendering. NULL in gives NULL out; a scalar in gives a scalar out.
pub(crate) fn invoke_hash(
    function: &'static str,
    input: &ColumnarValue,
    algorithm: HashAlgorithm,
    truncate_to: Option<usize>,
) -> Result<ColumnarValue> {
    let width = truncate_to.map_or(algorithm.max_len(), |t| t.min(algorithm.max_len()));
    let renderer = algorithm.renderer(truncate_to);
    match input {
        ColumnarValue::Array(array) => Ok(ColumnarValue::Array(algorithm.with_kernel(
            truncate_to,
            ArrayKernel {
                function,
                array,
                width,
            },
        )?)),
        ColumnarValue::Scalar(scalar) => {
            let bytes: Option<&[u8]> = match scalar {
                ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
                    v.as_deref().map(str::as_bytes)
                }
                ScalarValue::Binary(v)
                | ScalarValue::LargeBinary(v)
                | ScalarValue::BinaryView(v) => v.as_deref(),
                ScalarValue::Null => None,
                other => {
                    return Err(UdfError::InvalidArgument {
                        function,
                        message: format!("cannot hash a value of type {}", other.data_type()),
                    }
                    .into())
                }
            };
            let out = bytes.map(|b| {
                let mut out = Vec::with_capacity(width);
                renderer.render(b, &mut out);
                String::from_utf8(out).expect("hash renderings are ASCII")
            });
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(out)))
        }
    }
}

/// Hashes every value of one array (any string or binary type).
struct ArrayKernel<'a> {
    function: &'static str,
    array: &'a ArrayRef,
    width: usize,
}

impl HashKernel for ArrayKernel<'_> {
    type Output = Result<ArrayRef>;

    fn run<R: RenderHash>(self, r: R) -> Result<ArrayRef> {
        let ArrayKernel {
            function,
            array,
            width,
        } = self;
        let len = array.len();
        let nulls = array.logical_nulls();
        // SAFETY (every `value_unchecked` below): `i < len`, the array's length.
        let out = match array.data_type() {
            DataType::Utf8 => {
                let a = array.as_string::<i32>();
                render_values(function, a.value_offsets(), a.value_data(), nulls, width, r)
            }
            DataType::LargeUtf8 => {
                let a = array.as_string::<i64>();
                render_rows(function, len, nulls, width, |i, out| {
                    // SAFETY: `render_rows` passes row indexes below `len`, the array's length.
                    r.render(unsafe { a.value_unchecked(i) }.as_bytes(), out)
                })
            }
            DataType::Utf8View => {
                let a = array.as_string_view();
                render_rows(function, len, nulls, width, |i, out| {
                    // SAFETY: `render_rows` passes row indexes below `len`, the array's length.
                    r.render(unsafe { a.value_unchecked(i) }.as_bytes(), out)
                })
            }
            DataType::Binary => {
                let a = array.as_binary::<i32>();
                render_values(function, a.value_offsets(), a.value_data(), nulls, width, r)
            }
            DataType::LargeBinary => {
                let a = array.as_binary::<i64>();
                render_rows(function, len, nulls, width, |i, out| {
                    // SAFETY: `render_rows` passes row indexes below `len`, the array's length.
                    r.render(unsafe { a.value_unchecked(i) }, out)
                })
            }
            DataType::BinaryView => {
                let a = array.as_binary_view();
                render_rows(function, len, nulls, width, |i, out| {
                    // SAFETY: `render_rows` passes row indexes below `len`, the array's length.
                    r.render(unsafe { a.value_unchecked(i) }, out)
                })
            }
            DataType::Null => Ok(StringArray::new_null(len)),
            other => Err(UdfError::InvalidArgument {
                function,
                message: format!("cannot hash a column of type {other}"),
            }),
        }?;
        Ok(Arc::new(out))
    }
}

/// A hash kernel's output: offsets and bytes pre-sized for `len` renderings of at most `width`
/// bytes each (an error when they could not fit a Utf8 array).
struct Rendered {
    offsets: Vec<i32>,
    values: Vec<u8>,
}

impl Rendered {
    fn with_capacity(
        function: &'static str,
        len: usize,
        width: usize,
    ) -> std::result::Result<Self, UdfError> {
        if len.saturating_mul(width) > i32::MAX as usize {
            return Err(UdfError::OutputTooLarge {
                function,
                rows: len,
            });
        }
        let mut offsets: Vec<i32> = Vec::with_capacity(len + 1);
        offsets.push(0);
        Ok(Self {
            offsets,
            values: Vec::with_capacity(len * width),
        })
    }

    /// Ends the current row (empty when nothing was appended: a NULL row).
    #[inline(always)]
    fn end_row(&mut self) {
        self.offsets.push(self.values.len() as i32);
    }

    fn finish(self, nulls: Option<NullBuffer>) -> StringArray {
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        // SAFETY: offsets start at 0, never decrease and end at `values.len()`, which fits in
        // i32 (at most `width` bytes per row, checked in `with_capacity`); every rendering is
        // ASCII digits or hex, so the values are UTF-8.
        unsafe { StringArray::new_unchecked(offsets, Buffer::from_vec(self.values), nulls) }
    }
}

/// The kernel of every hash function: one pass over `len` rows, `render(i, out)` appending the
/// rendering (at most `width` bytes, ASCII) of each row that `nulls` marks valid; output
/// offsets and bytes pre-sized, the null mask reused.
pub(crate) fn render_rows(
    function: &'static str,
    len: usize,
    nulls: Option<NullBuffer>,
    width: usize,
    mut render: impl FnMut(usize, &mut Vec<u8>),
) -> std::result::Result<StringArray, UdfError> {
    let mut out = Rendered::with_capacity(function, len, width)?;
    for i in 0..len {
        if nulls.as_ref().is_none_or(|n| n.is_valid(i)) {
            let start = out.values.len();
            render(i, &mut out.values);
            debug_assert!(out.values.len() - start <= width);
        }
        out.end_row();
    }
    Ok(out.finish(nulls))
}

/// The row loop of the kernels that hash eight strings at once ([`RenderHash::lanes8`]):
/// eight consecutive valid rows `i..i + 8` go to `eight(i, scratch, out, ends)`, which renders
/// them into `out` and sets `ends` as [`RenderHash::render8`] does, or returns false when it
/// cannot take them; every other valid row goes to `one(i, scratch, out)`. `scratch` is a
/// buffer reused from call to call.
fn render_eights(
    function: &'static str,
    len: usize,
    nulls: Option<NullBuffer>,
    width: usize,
    mut eight: impl FnMut(usize, &mut Vec<u8>, &mut Vec<u8>, &mut [usize; 8]) -> bool,
    mut one: impl FnMut(usize, &mut Vec<u8>, &mut Vec<u8>),
) -> std::result::Result<StringArray, UdfError> {
    let mut out = Rendered::with_capacity(function, len, width)?;
    let valid = |i: usize| nulls.as_ref().is_none_or(|n| n.is_valid(i));
    let mut scratch = Vec::new();
    let mut ends = [0usize; 8];
    let mut i = 0;
    while i < len {
        if i + 8 <= len
            && (i..i + 8).all(valid)
            && eight(i, &mut scratch, &mut out.values, &mut ends)
        {
            out.offsets.extend(ends.iter().map(|&e| e as i32));
            i += 8;
            continue;
        }
        if valid(i) {
            one(i, &mut scratch, &mut out.values);
        }
        out.end_row();
        i += 1;
    }
    debug_assert!(out.values.len() <= len * width);
    Ok(out.finish(nulls))
}

/// [`render_rows`] over the values of a Utf8 or Binary array (`offsets` and `data` its
/// buffers): where `r` hashes eight strings at once, eight consecutive valid values are hashed
/// together straight from `data` (they lie back to back there) when `data` has
/// [`LANES_SLACK`] bytes after them; any other value alone.
fn render_values<R: RenderHash>(
    function: &'static str,
    offsets: &[i32],
    data: &[u8],
    nulls: Option<NullBuffer>,
    width: usize,
    r: R,
) -> std::result::Result<StringArray, UdfError> {
    let len = offsets.len().saturating_sub(1);
    let value = |i: usize| &data[offsets[i] as usize..offsets[i + 1] as usize];
    if !r.lanes8() {
        return render_rows(function, len, nulls, width, |i, out| {
            r.render(value(i), out)
        });
    }
    render_eights(
        function,
        len,
        nulls,
        width,
        |i, _, out, ends| {
            if offsets[i + 8] as usize + LANES_SLACK > data.len() {
                return false;
            }
            let bounds: [usize; 9] = std::array::from_fn(|k| offsets[i + k] as usize);
            r.render8(data, &bounds, out, ends);
            true
        },
        |i, _, out| r.render(value(i), out),
    )
}

/// [`render_rows`] for a kernel that first builds each row's bytes (`build(i, buf)` appends
/// row `i`'s to `buf`), then hashes them with `r`. Where `r` hashes eight strings at once,
/// eight consecutive valid rows are built end to end and hashed together (followed by
/// `LANES_SLACK` zero bytes the hash may read); any other row alone.
pub(crate) fn render_built_rows<R: RenderHash>(
    function: &'static str,
    len: usize,
    nulls: Option<NullBuffer>,
    width: usize,
    r: R,
    build: impl Fn(usize, &mut Vec<u8>),
) -> std::result::Result<StringArray, UdfError> {
    if !r.lanes8() {
        let mut block = Vec::new();
        return render_rows(function, len, nulls, width, |i, out| {
            block.clear();
            build(i, &mut block);
            r.render(&block, out);
        });
    }
    render_eights(
        function,
        len,
        nulls,
        width,
        |i, block, out, ends| {
            block.clear();
            let mut starts = [0usize; 9];
            for (k, start) in starts.iter_mut().take(8).enumerate() {
                *start = block.len();
                build(i + k, block);
            }
            starts[8] = block.len();
            block.extend_from_slice(&[0; LANES_SLACK]);
            r.render8(block, &starts, out, ends);
            true
        },
        |i, block, out| {
            block.clear();
            build(i, block);
            r.render(block, out);
        },
    )
}

/// Declares a one-argument hash function `name(s)`: its `ScalarUDFImpl`, its documentation, a
/// `<name>_udf()` singleton and an `expr_fn` helper. The per-value work is the `$append` function.
macro_rules! make_hash_udf {
    ($udf:ident, $name:ident, $algorithm:expr, $doc:expr, $example:expr) => {
        #[doc = $doc]
        #[derive(Debug, PartialEq, Eq, Hash)]
        pub struct $udf {
            signature: datafusion::logical_expr::Signature,
        }

        impl Default for $udf {
            fn default() -> Self {
                Self {
                    signature: datafusion::logical_expr::Signature::user_defined(
                        datafusion::logical_expr::Volatility::Immutable,
                    ),
                }
            }
        }

        impl datafusion::logical_expr::ScalarUDFImpl for $udf {
            fn name(&self) -> &str {
                stringify!($name)
            }

            fn signature(&self) -> &datafusion::logical_expr::Signature {
                &self.signature
            }

            fn coerce_types(
                &self,
                arg_types: &[datafusion::arrow::datatypes::DataType],
            ) -> datafusion::common::Result<Vec<datafusion::arrow::datatypes::DataType>> {
                match arg_types {
                    [t] => Ok(vec![$crate::common::coerce_hashed(stringify!($name), t)?]),
                    _ => Err($crate::error::UdfError::InvalidArgument {
                        function: stringify!($name),
                        message: format!("takes exactly one argument, got {}", arg_types.len()),
                    }
                    .into()),
                }
            }

            fn return_type(
                &self,
                _arg_types: &[datafusion::arrow::datatypes::DataType],
            ) -> datafusion::common::Result<datafusion::arrow::datatypes::DataType> {
                Ok(datafusion::arrow::datatypes::DataType::Utf8)
            }

            fn invoke_with_args(
                &self,
                args: datafusion::logical_expr::ScalarFunctionArgs,
            ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
                let algorithm: $crate::HashAlgorithm = $algorithm;
                // A plan decoded from elsewhere (a worker's) has not been through the
                // planner's argument checks.
                let [value] = args.args.as_slice() else {
                    return Err($crate::common::invalid(
                        stringify!($name),
                        format!("takes one argument, got {}", args.args.len()),
                    )
                    .into());
                };
                $crate::common::invoke_hash(stringify!($name), value, algorithm, None)
            }

            fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
                static DOC: std::sync::LazyLock<datafusion::logical_expr::Documentation> =
                    std::sync::LazyLock::new(|| {
                        datafusion::logical_expr::Documentation::builder(
                            datafusion::logical_expr::scalar_doc_sections::DOC_SECTION_HASHING,
                            $doc,
                            concat!(stringify!($name), "(expression)"),
                        )
                        .with_standard_argument("expression", Some("String or Binary"))
                        .with_sql_example($example)
                        .build()
                    });
                Some(&DOC)
            }
        }

        /// The shared instance of this function.
        pub fn udf() -> std::sync::Arc<datafusion::logical_expr::ScalarUDF> {
            static UDF: std::sync::LazyLock<std::sync::Arc<datafusion::logical_expr::ScalarUDF>> =
                std::sync::LazyLock::new(|| {
                    std::sync::Arc::new(datafusion::logical_expr::ScalarUDF::new_from_impl(
                        $udf::default(),
                    ))
                });
            std::sync::Arc::clone(&UDF)
        }

        /// Builds the expression `name(expr)` for the DataFrame API.
        pub fn $name(expr: datafusion::logical_expr::Expr) -> datafusion::logical_expr::Expr {
            udf().call(vec![expr])
        }
    };
}

/// An invalid-argument error of `function`.
pub(crate) fn invalid(function: &'static str, message: impl Into<String>) -> UdfError {
    UdfError::InvalidArgument {
        function,
        message: message.into(),
    }
}

/// Reads the constant algorithm argument.
pub(crate) fn algorithm_arg(
    function: &'static str,
    value: Option<&ScalarValue>,
) -> Result<HashAlgorithm, UdfError> {
    match value {
        Some(v) => match v.try_as_str() {
            Some(Some(name)) => name.parse(),
            Some(None) => Err(invalid(function, "the algorithm must not be NULL")),
            None => Err(invalid(
                function,
                format!("the algorithm must be a string, got {}", v.data_type()),
            )),
        },
        None => Err(invalid(
            function,
            format!(
                "the algorithm must be a constant string, one of {}",
                HashAlgorithm::valid_names()
            ),
        )),
    }
}

/// Reads the optional constant truncation argument; NULL means no truncation.
pub(crate) fn truncate_arg(
    function: &'static str,
    value: Option<&ScalarValue>,
) -> Result<Option<usize>, UdfError> {
    let v = value.ok_or_else(|| invalid(function, "truncate_to must be a constant integer"))?;
    if v.is_null() {
        return Ok(None);
    }
    let n = v
        .cast_to(&DataType::Int64)
        .ok()
        .and_then(|c| match c {
            ScalarValue::Int64(n) => n,
            _ => None,
        })
        .ok_or_else(|| invalid(function, format!("truncate_to must be an integer, got {v}")))?;
    if n < 1 {
        return Err(invalid(
            function,
            format!("truncate_to must be at least 1, got {n}"),
        ));
    }
    Ok(Some(n as usize))
}

#[cfg(test)]
mod tests {
    use super::extend_small;

    #[test]
    fn extend_small_appends_every_length_exactly() {
        let source: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        for capacity in [0, 7, 40, 200] {
            for start in [0, 1, 3, 17] {
                for n in 0..=100 {
                    let bytes = &source[start..start + n];
                    let mut out = Vec::with_capacity(capacity);
                    out.extend_from_slice(b"prefix");
                    extend_small(&mut out, bytes);
                    extend_small(&mut out, b"|");
                    let mut want = b"prefix".to_vec();
                    want.extend_from_slice(bytes);
                    want.push(b'|');
                    assert_eq!(out, want, "capacity {capacity}, start {start}, length {n}");
                }
            }
        }
    }
}
