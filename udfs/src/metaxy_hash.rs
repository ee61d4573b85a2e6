//! `metaxy_hash(s, algorithm [, truncate_to])`: hash with any algorithm metaxy offers, optionally
//! keeping only the first `truncate_to` characters (metaxy's `hash_truncation_length`).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::Result;
use datafusion::logical_expr::scalar_doc_sections::DOC_SECTION_HASHING;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};

use crate::common::{algorithm_arg, coerce_hashed, invoke_hash, truncate_arg};
use crate::error::UdfError;
use crate::HashAlgorithm;

const NAME: &str = "metaxy_hash";

/// `metaxy_hash(s, algorithm [, truncate_to])`. The algorithm and the truncation are constants,
/// checked when the query is planned.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MetaxyHashFunc {
    signature: Signature,
}

impl Default for MetaxyHashFunc {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

fn invalid(message: impl Into<String>) -> UdfError {
    crate::common::invalid(NAME, message)
}

impl ScalarUDFImpl for MetaxyHashFunc {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(2..=3).contains(&arg_types.len()) {
            return Err(invalid(format!(
                "takes 2 or 3 arguments (s, algorithm [, truncate_to]), got {}",
                arg_types.len()
            ))
            .into());
        }
        let mut out = vec![coerce_hashed(NAME, &arg_types[0])?];
        match &arg_types[1] {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
                out.push(DataType::Utf8)
            }
            other => {
                return Err(invalid(format!("the algorithm must be a string, got {other}")).into())
            }
        }
        if let Some(t) = arg_types.get(2) {
            if !(t.is_integer() || t == &DataType::Null) {
                return Err(invalid(format!("truncate_to must be an integer, got {t}")).into());
            }
            out.push(DataType::Int64);
        }
        Ok(out)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        // Validate the constants at planning time so a typo fails before any data is read. An
        // argument that is not yet a literal (e.g. a cast the simplifier has not folded) is
        // checked when the function runs.
        if let Some(algorithm) = args.scalar_arguments.get(1).copied().flatten() {
            algorithm_arg(NAME, Some(algorithm))?;
        }
        if let Some(truncate_to) = args.scalar_arguments.get(2).copied().flatten() {
            truncate_arg(NAME, Some(truncate_to))?;
        }
        let nullable = args.arg_fields.first().is_none_or(|f| f.is_nullable());
        Ok(Arc::new(Field::new(NAME, DataType::Utf8, nullable)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let constant = |i: usize| match args.args.get(i) {
            Some(ColumnarValue::Scalar(s)) => Some(s),
            _ => None,
        };
        let algorithm = algorithm_arg(NAME, constant(1))?;
        let truncate_to = match args.args.len() {
            3 => truncate_arg(NAME, constant(2))?,
            _ => None,
        };
        let Some(value) = args.args.first() else {
            return Err(invalid("takes 2 or 3 arguments, got none").into());
        };
        invoke_hash(NAME, value, algorithm, truncate_to)
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                DOC_SECTION_HASHING,
                "Hashes a string or binary with one of metaxy's algorithms exactly as polars-hash \
                 renders it (integer hashes in decimal, md5/sha256 in lowercase hex), keeping the \
                 first `truncate_to` characters when given.",
                "metaxy_hash(expression, algorithm[, truncate_to])",
            )
            .with_standard_argument("expression", Some("String or Binary"))
            .with_argument(
                "algorithm",
                "Constant string: xxhash64, xxhash32, xxh3_64, wyhash, md5 or sha256.",
            )
            .with_argument(
                "truncate_to",
                "Optional constant integer ≥ 1: keep this many leading characters (NULL keeps all).",
            )
            .with_sql_example(
                "SELECT metaxy_hash('abc', 'sha256', 8); -- ba7816bf",
            )
            .build()
        });
        Some(&DOC)
    }
}

/// The shared instance of `metaxy_hash`.
pub fn udf() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> =
        LazyLock::new(|| Arc::new(ScalarUDF::new_from_impl(MetaxyHashFunc::default())));
    Arc::clone(&UDF)
}

/// Builds `metaxy_hash(expr, algorithm [, truncate_to])` for the DataFrame API.
///
/// ```
/// use datafusion::prelude::col;
/// use datafusion_metaxy_udfs::{functions::metaxy_hash, HashAlgorithm};
/// let e = metaxy_hash(col("s"), HashAlgorithm::Xxhash64, Some(8));
/// assert_eq!(e.to_string(), "metaxy_hash(s, Utf8(\"xxhash64\"), Int64(8))");
/// ```
pub fn metaxy_hash(expr: Expr, algorithm: HashAlgorithm, truncate_to: Option<usize>) -> Expr {
    let mut args = vec![expr, datafusion::prelude::lit(algorithm.name())];
    if let Some(n) = truncate_to {
        args.push(datafusion::prelude::lit(n as i64));
    }
    udf().call(args)
}
