//! `metaxy_hash_concat(algorithm, truncate_to, separator, part, ...)`: the hash of the parts
//! joined by `separator`, computed without building the joined column. NULL when any part is
//! NULL — Polars' `concat_str` semantics, which metaxy's provenance strings follow (DataFusion's
//! `concat_ws` would skip a NULL part and silently shorten the string).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, LargeStringArray, StringArray, StringViewArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::scalar_doc_sections::DOC_SECTION_HASHING;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};

use crate::algorithm::{HashKernel, RenderHash};
use crate::common::{algorithm_arg, extend_small, invoke_hash, render_built_rows, truncate_arg};
use crate::error::UdfError;
use crate::HashAlgorithm;

const NAME: &str = "metaxy_hash_concat";

/// `metaxy_hash_concat(algorithm, truncate_to, separator, part, ...)`; the first three are
/// constants checked when the query is planned.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MetaxyHashConcatFunc {
    signature: Signature,
}

impl Default for MetaxyHashConcatFunc {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

fn invalid(message: impl Into<String>) -> UdfError {
    crate::common::invalid(NAME, message)
}

/// Every row's joined string: `prefix`, then each column part's value followed by the run of
/// constant parts and separators after it. Runs of constants are joined once, so a row copies
/// one piece per column part and one per run.
struct Layout<V> {
    prefix: Vec<u8>,
    columns: Vec<(V, Vec<u8>)>,
}

/// The values of a column part.
trait Values {
    /// The value of row `i` (of a NULL row: whatever the array holds there; not read).
    ///
    /// # Safety
    /// `i` must be below the array's length (any `i` for a scalar).
    unsafe fn value(&self, i: usize) -> &[u8];

    /// Asks the CPU to start loading what row `i + 64` or so will read (a hint; nothing is
    /// read here).
    fn prefetch(&self, _i: usize) {}
}

/// A Utf8 column's buffers, the common case, read without dispatching on the type per row.
struct Utf8Values<'a> {
    offsets: &'a [i32],
    data: &'a [u8],
}

impl Values for Utf8Values<'_> {
    #[inline(always)]
    unsafe fn value(&self, i: usize) -> &[u8] {
        // SAFETY: `i + 1 < offsets.len()` (the caller's bound) and a valid array's offsets
        // are non-decreasing and within its data.
        unsafe {
            let start = *self.offsets.get_unchecked(i) as usize;
            let end = *self.offsets.get_unchecked(i + 1) as usize;
            self.data.get_unchecked(start..end)
        }
    }

    /// The row loops read several columns a row at a time: eight or more streams of offsets
    /// and bytes, more than the hardware prefetchers follow, so the loads of the offsets miss
    /// the cache. Ahead by 64 rows' offsets and 512 bytes.
    #[inline(always)]
    fn prefetch(&self, i: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let start = self.offsets.get(i).map_or(0, |&o| o as usize);
            // SAFETY: SSE is part of x86-64; prefetches read nothing and never fault, so the
            // addresses need not be within the buffers.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(self.offsets.as_ptr().wrapping_add(i + 64).cast());
                _mm_prefetch::<_MM_HINT_T0>(self.data.as_ptr().wrapping_add(start + 512).cast());
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }
}

/// One part's values, read without copying.
enum Part<'a> {
    Scalar(Option<&'a str>),
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
}

impl Values for Part<'_> {
    #[inline(always)]
    unsafe fn value(&self, i: usize) -> &[u8] {
        // SAFETY: `i` is below the array's length (the caller's bound).
        unsafe {
            match self {
                Part::Scalar(s) => s.unwrap_or_default().as_bytes(),
                Part::Utf8(a) => a.value_unchecked(i).as_bytes(),
                Part::Large(a) => a.value_unchecked(i).as_bytes(),
                Part::View(a) => a.value_unchecked(i).as_bytes(),
            }
        }
    }
}

impl Part<'_> {
    fn len(&self) -> Option<usize> {
        match self {
            Part::Scalar(_) => None,
            Part::Utf8(a) => Some(a.len()),
            Part::Large(a) => Some(a.len()),
            Part::View(a) => Some(a.len()),
        }
    }

    fn nulls(&self) -> Option<&NullBuffer> {
        match self {
            Part::Scalar(_) => None,
            Part::Utf8(a) => a.nulls(),
            Part::Large(a) => a.nulls(),
            Part::View(a) => a.nulls(),
        }
    }
}

/// Joins each row's pieces into one buffer, then hashes it.
struct ConcatKernel<'a, V> {
    layout: &'a Layout<V>,
    rows: usize,
    nulls: Option<NullBuffer>,
    width: usize,
}

impl<V: Values> HashKernel for ConcatKernel<'_, V> {
    type Output = Result<StringArray, UdfError>;

    fn run<R: RenderHash>(self, r: R) -> Result<StringArray, UdfError> {
        let Layout { prefix, columns } = self.layout;
        render_built_rows(NAME, self.rows, self.nulls, self.width, r, |i, joined| {
            if i % 8 == 0 {
                for (values, _) in columns {
                    values.prefetch(i);
                }
            }
            extend_small(joined, prefix);
            for (values, constant) in columns {
                // SAFETY: `i < rows`, and every column part has `rows` values (checked).
                extend_small(joined, unsafe { values.value(i) });
                extend_small(joined, constant);
            }
        })
    }
}

/// The hashes of the `rows` joined strings of `layout`.
fn hash_rows<V: Values>(
    algorithm: HashAlgorithm,
    truncate_to: Option<usize>,
    layout: &Layout<V>,
    rows: usize,
    nulls: Option<NullBuffer>,
    width: usize,
) -> Result<StringArray, UdfError> {
    algorithm.with_kernel(
        truncate_to,
        ConcatKernel {
            layout,
            rows,
            nulls,
            width,
        },
    )
}

fn part(value: &ColumnarValue) -> Result<Part<'_>> {
    Ok(match value {
        ColumnarValue::Scalar(s) => match s.try_as_str() {
            Some(v) => Part::Scalar(v),
            None => {
                return Err(invalid(format!("parts must be strings, got {}", s.data_type())).into())
            }
        },
        ColumnarValue::Array(a) => match a.data_type() {
            DataType::Utf8 => Part::Utf8(a.as_string::<i32>()),
            DataType::LargeUtf8 => Part::Large(a.as_string::<i64>()),
            DataType::Utf8View => Part::View(a.as_string_view()),
            other => return Err(invalid(format!("parts must be strings, got {other}")).into()),
        },
    })
}

impl ScalarUDFImpl for MetaxyHashConcatFunc {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() < 4 {
            return Err(invalid(format!(
                "takes (algorithm, truncate_to, separator, part, ...): at least 4 arguments, got {}",
                arg_types.len()
            ))
            .into());
        }
        let mut out = vec![DataType::Utf8, DataType::Int64, DataType::Utf8];
        if !(arg_types[1].is_integer() || arg_types[1] == DataType::Null) {
            return Err(invalid(format!(
                "truncate_to must be an integer, got {}",
                arg_types[1]
            ))
            .into());
        }
        for t in &arg_types[3..] {
            out.push(match t {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => t.clone(),
                _ => DataType::Utf8,
            });
        }
        Ok(out)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if let Some(algorithm) = args.scalar_arguments.first().copied().flatten() {
            algorithm_arg(NAME, Some(algorithm))?;
        }
        if let Some(truncate_to) = args.scalar_arguments.get(1).copied().flatten() {
            truncate_arg(NAME, Some(truncate_to))?;
        }
        let nullable = args.arg_fields[3..].iter().any(|f| f.is_nullable());
        Ok(Arc::new(Field::new(NAME, DataType::Utf8, nullable)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let constant = |i: usize| match args.args.get(i) {
            Some(ColumnarValue::Scalar(s)) => Some(s),
            _ => None,
        };
        let algorithm: HashAlgorithm = algorithm_arg(NAME, constant(0))?;
        let truncate_to = truncate_arg(NAME, constant(1))?;
        let separator = match constant(2).map(|s| s.try_as_str()) {
            Some(Some(Some(s))) => s.to_string(),
            _ => return Err(invalid("the separator must be a constant, non-NULL string").into()),
        };
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_scalar { 1 } else { args.number_rows };
        let width = truncate_to.map_or(algorithm.max_len(), |t| t.min(algorithm.max_len()));
        let mut layout: Layout<Part> = Layout {
            prefix: Vec::new(),
            columns: Vec::new(),
        };
        let mut rows_to_hash = rows;
        for (k, value) in args.args[3..].iter().enumerate() {
            let constant = match layout.columns.last_mut() {
                Some((_, after)) => after,
                None => &mut layout.prefix,
            };
            if k > 0 {
                constant.extend_from_slice(separator.as_bytes());
            }
            match part(value)? {
                Part::Scalar(Some(v)) => constant.extend_from_slice(v.as_bytes()),
                Part::Scalar(None) => {
                    rows_to_hash = 0;
                    break;
                }
                column => {
                    if column.len() != Some(rows) {
                        return Err(invalid(format!(
                            "part {} has {} rows, expected {rows}",
                            k + 1,
                            column.len().unwrap_or_default()
                        ))
                        .into());
                    }
                    layout.columns.push((column, Vec::new()));
                }
            }
        }
        // One column part and nothing else (a sample's provenance over one field): its values
        // are the joined strings, hashed as `metaxy_hash(part)` hashes a column (eight at a
        // time straight from a Utf8 column's buffer).
        if let [ColumnarValue::Array(_)] = &args.args[3..] {
            return invoke_hash(NAME, &args.args[3], algorithm, truncate_to);
        }
        // NULL where any column part is NULL; everywhere when a constant part is.
        let nulls = if rows_to_hash == 0 {
            Some(NullBuffer::new_null(rows))
        } else {
            layout.columns.iter().fold(None, |acc, (p, _)| {
                NullBuffer::union(acc.as_ref(), p.nulls())
            })
        };
        let utf8: Option<Vec<(Utf8Values, Vec<u8>)>> = layout
            .columns
            .iter()
            .map(|(p, after)| match p {
                Part::Utf8(a) => Some((
                    Utf8Values {
                        offsets: a.value_offsets(),
                        data: a.value_data(),
                    },
                    after.clone(),
                )),
                _ => None,
            })
            .collect();
        let array: ArrayRef = Arc::new(match utf8 {
            // Every column part Utf8: one loop without a type dispatch per part and row.
            Some(columns) => {
                let prefix = layout.prefix.clone();
                hash_rows(
                    algorithm,
                    truncate_to,
                    &Layout { prefix, columns },
                    rows,
                    nulls,
                    width,
                )
            }
            None => hash_rows(algorithm, truncate_to, &layout, rows, nulls, width),
        }?);
        Ok(if all_scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                DOC_SECTION_HASHING,
                "Hashes the parts joined by the separator, as `metaxy_hash(concat_ws(separator, \
                 part, ...), algorithm, truncate_to)` would, but NULL when any part is NULL (as \
                 Polars' concat_str) and without building the joined strings.",
                "metaxy_hash_concat(algorithm, truncate_to, separator, part[, ...])",
            )
            .with_argument("algorithm", "Constant string: xxhash64, xxhash32, xxh3_64, wyhash, md5 or sha256.")
            .with_argument("truncate_to", "Constant integer ≥ 1, or NULL to keep the whole hash.")
            .with_argument("separator", "Constant string put between the parts.")
            .with_argument("part", "Strings to join; one NULL makes the result NULL.")
            .with_sql_example("SELECT metaxy_hash_concat('xxhash64', 8, '|', 'prediction', '1'); -- = metaxy_hash('prediction|1', 'xxhash64', 8)")
            .build()
        });
        Some(&DOC)
    }
}

/// The shared instance of `metaxy_hash_concat`.
pub fn udf() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> =
        LazyLock::new(|| Arc::new(ScalarUDF::new_from_impl(MetaxyHashConcatFunc::default())));
    Arc::clone(&UDF)
}

/// Builds `metaxy_hash_concat(algorithm, truncate_to, separator, parts...)` for the DataFrame API.
///
/// ```
/// use datafusion::prelude::{col, lit};
/// use datafusion_metaxy_udfs::{functions::metaxy_hash_concat, HashAlgorithm};
/// let e = metaxy_hash_concat(HashAlgorithm::Xxhash64, Some(8), "|", vec![lit("a"), col("b")]);
/// assert_eq!(e.to_string(), "metaxy_hash_concat(Utf8(\"xxhash64\"), Int64(8), Utf8(\"|\"), Utf8(\"a\"), b)");
/// ```
pub fn metaxy_hash_concat(
    algorithm: HashAlgorithm,
    truncate_to: Option<usize>,
    separator: &str,
    parts: Vec<Expr>,
) -> Expr {
    use datafusion::prelude::lit;
    let mut args = vec![
        lit(algorithm.name()),
        match truncate_to {
            Some(n) => lit(n as i64),
            None => lit(ScalarValue::Int64(None)),
        },
        lit(separator),
    ];
    args.extend(parts);
    udf().call(args)
}
