//! Candidate samples as a filter on a table's id columns: `metaxy_candidate(ids…)`, true for
//! the rows of the samples an incremental `resolve_update` re-examines. The set is built once
//! per table, cast to that table's id types.

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::{
    col, ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::{json, Value};

use crate::error::Result;

/// The filter keeping the rows whose `columns` (of the given types) hold one of the ids in
/// `candidates` (batches whose columns are the ids, in order).
pub fn candidate_filter(
    candidates: &[RecordBatch],
    columns: &[String],
    types: &[DataType],
) -> Result<Expr> {
    let set = KeySet::build(candidates, types)?;
    let udf = ScalarUDF::new_from_impl(InCandidates::new(set, columns.len()));
    Ok(udf.call(columns.iter().map(|c| col(c.as_str())).collect()))
}

/// A multiplicative hasher for integer ids (the standard one is several times slower, and
/// ids are not chosen by an adversary of this process).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_i64(&mut self, v: i64) {
        self.0 = (v as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
}

type IdSet = HashSet<i64, BuildHasherDefault<IdHasher>>;

/// The candidate samples as one table's id values: a bitmap over a dense range of integer
/// ids, a hash set of integers, or a set of encoded rows (several columns, other types).
enum KeySet {
    Dense { min: i64, bits: Vec<u64> },
    Ints(IdSet),
    Rows(Vec<DataType>, RowConverter, HashSet<Box<[u8]>>),
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySet::Dense { bits, .. } => write!(f, "Dense({} words)", bits.len()),
            KeySet::Ints(s) => write!(f, "Ints({})", s.len()),
            KeySet::Rows(_, _, s) => write!(f, "Rows({})", s.len()),
        }
    }
}

/// An integer array as i64 values: u64 reinterpreted (as [`test_ints`] reads them), every other
/// integer type widened.
fn as_i64(array: &ArrayRef) -> DFResult<datafusion::arrow::array::Int64Array> {
    use datafusion::arrow::datatypes::{Int64Type, UInt64Type};
    Ok(match array.data_type() {
        DataType::UInt64 => array
            .as_primitive::<UInt64Type>()
            .unary::<_, Int64Type>(|v| v as i64),
        _ => datafusion::arrow::compute::cast(array, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone(),
    })
}

impl KeySet {
    /// The candidate ids cast to a table's id column types (values that do not fit cannot be
    /// in that table and are left out).
    fn build(batches: &[RecordBatch], types: &[DataType]) -> Result<Self> {
        let safe = CastOptions {
            safe: true,
            ..Default::default()
        };
        let mut columns: Vec<Vec<ArrayRef>> = vec![vec![]; types.len()];
        for b in batches {
            for (i, t) in types.iter().enumerate() {
                let original = b.column(i);
                let cast = cast_with_options(original, t, &safe)?;
                columns[i].push(cast);
            }
        }
        // Rows whose cast lost a value (NULL where the original was not) are dropped.
        let keep = |b: usize, row: usize| {
            (0..types.len())
                .all(|i| batches[b].column(i).is_null(row) || !columns[i][b].is_null(row))
        };
        if types.len() == 1 && types[0].is_integer() {
            let mut values: Vec<i64> = vec![];
            let mut nulls = false;
            for (b, array) in columns[0].iter().enumerate() {
                for (row, v) in as_i64(array)?.iter().enumerate() {
                    match v {
                        Some(v) => values.push(v),
                        None if keep(b, row) => nulls = true,
                        None => {}
                    }
                }
            }
            if !nulls {
                let (min, max) = (
                    values.iter().copied().min().unwrap_or(0),
                    values.iter().copied().max().unwrap_or(0),
                );
                let span = (max as i128 - min as i128 + 1) as u128;
                // A bitmap of up to 32 MB: one bit test per row.
                if span <= (1 << 28) {
                    let mut bits = vec![0u64; span.div_ceil(64) as usize];
                    for v in values {
                        let i = (v - min) as usize;
                        bits[i / 64] |= 1 << (i % 64);
                    }
                    return Ok(KeySet::Dense { min, bits });
                }
                return Ok(KeySet::Ints(values.into_iter().collect()));
            }
        }
        let converter = RowConverter::new(types.iter().cloned().map(SortField::new).collect())?;
        let mut set = HashSet::new();
        for b in 0..batches.len() {
            let arrays: Vec<ArrayRef> = columns.iter().map(|c| Arc::clone(&c[b])).collect();
            let rows = converter.convert_columns(&arrays)?;
            for (row, r) in rows.iter().enumerate() {
                if keep(b, row) {
                    set.insert(r.as_ref().to_vec().into_boxed_slice());
                }
            }
        }
        Ok(KeySet::Rows(types.to_vec(), converter, set))
    }

    fn contains_all(&self, arrays: &[ArrayRef]) -> DFResult<BooleanArray> {
        // A plan decoded from elsewhere (a worker's) has not been through the planner's
        // argument checks.
        let expected = match self {
            KeySet::Dense { .. } | KeySet::Ints(_) => 1,
            KeySet::Rows(types, ..) => types.len(),
        };
        if arrays.len() != expected {
            return Err(DataFusionError::Plan(format!(
                "metaxy_candidate takes {expected} id arguments, got {}",
                arrays.len()
            )));
        }
        match self {
            KeySet::Dense { min, bits } => {
                let span = (bits.len() * 64) as i64;
                let min = *min;
                test_ints(&arrays[0], |v| {
                    let i = v.wrapping_sub(min);
                    (0..span).contains(&i) && bits[i as usize / 64] & (1 << (i as usize % 64)) != 0
                })
            }
            KeySet::Ints(set) => test_ints(&arrays[0], |v| set.contains(&v)),
            KeySet::Rows(_, converter, set) => {
                let rows = converter.convert_columns(arrays)?;
                Ok(rows
                    .iter()
                    .map(|r| Some(set.contains(r.as_ref())))
                    .collect())
            }
        }
    }
}

/// `test` of every value of an integer array (as i64; unsigned values reinterpreted), false
/// for NULLs, read straight from the value buffer.
fn test_ints(array: &ArrayRef, test: impl Fn(i64) -> bool) -> DFResult<BooleanArray> {
    use datafusion::arrow::buffer::BooleanBuffer;
    use datafusion::arrow::datatypes::*;
    macro_rules! run {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            let values = a.values();
            let hits = BooleanBuffer::collect_bool(a.len(), |i| test(values[i] as i64));
            let hits = match a.nulls() {
                Some(nulls) => &hits & nulls.inner(),
                None => hits,
            };
            Ok(BooleanArray::new(hits, None))
        }};
    }
    match array.data_type() {
        DataType::Int8 => run!(Int8Type),
        DataType::Int16 => run!(Int16Type),
        DataType::Int32 => run!(Int32Type),
        DataType::Int64 => run!(Int64Type),
        DataType::UInt8 => run!(UInt8Type),
        DataType::UInt16 => run!(UInt16Type),
        DataType::UInt32 => run!(UInt32Type),
        DataType::UInt64 => run!(UInt64Type),
        other => Err(DataFusionError::Internal(format!(
            "candidate ids: {other} is not an integer type"
        ))),
    }
}

/// `metaxy_candidate(ids…)`: whether a row's ids are those of a candidate sample.
#[derive(Debug)]
pub struct InCandidates {
    set: Arc<KeySet>,
    signature: Signature,
}

impl InCandidates {
    fn new(set: KeySet, arity: usize) -> Self {
        Self {
            set: Arc::new(set),
            signature: Signature::any(arity, Volatility::Immutable),
        }
    }

    /// The set as JSON, for plans that travel ([`crate::distributed::codec::MetaxyCodec`]).
    pub fn encode(&self) -> Value {
        match self.set.as_ref() {
            KeySet::Dense { min, bits } => json!({"dense": {"min": min, "bits": bits}}),
            KeySet::Ints(set) => json!({"ints": set.iter().collect::<Vec<_>>()}),
            KeySet::Rows(types, _, set) => {
                let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
                json!({"rows": {"types": types, "rows": set.iter().collect::<Vec<_>>()}})
            }
        }
    }

    /// The function [`InCandidates::encode`] described.
    pub fn decode(value: &Value) -> Option<ScalarUDF> {
        let set = if let Some(d) = value.get("dense") {
            KeySet::Dense {
                min: d.get("min")?.as_i64()?,
                bits: serde_json::from_value(d.get("bits")?.clone()).ok()?,
            }
        } else if let Some(i) = value.get("ints") {
            let v: Vec<i64> = serde_json::from_value(i.clone()).ok()?;
            KeySet::Ints(v.into_iter().collect())
        } else {
            let r = value.get("rows")?;
            let types: Vec<String> = serde_json::from_value(r.get("types")?.clone()).ok()?;
            let types: Vec<DataType> = types
                .iter()
                .map(|t| t.parse().ok())
                .collect::<Option<_>>()?;
            let rows: Vec<Vec<u8>> = serde_json::from_value(r.get("rows")?.clone()).ok()?;
            let arity = types.len();
            let converter =
                RowConverter::new(types.iter().cloned().map(SortField::new).collect()).ok()?;
            let set = rows.into_iter().map(Vec::into_boxed_slice).collect();
            return Some(ScalarUDF::new_from_impl(Self::new(
                KeySet::Rows(types, converter, set),
                arity,
            )));
        };
        let arity = 1;
        Some(ScalarUDF::new_from_impl(Self::new(set, arity)))
    }
}

impl PartialEq for InCandidates {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.set, &other.set)
    }
}
impl Eq for InCandidates {}
impl Hash for InCandidates {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.set) as usize).hash(state);
    }
}

impl ScalarUDFImpl for InCandidates {
    fn name(&self) -> &str {
        "metaxy_candidate"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DFResult<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        Ok(ColumnarValue::Array(Arc::new(
            self.set.contains_all(&arrays)?,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call with fewer or more id arguments than the set holds (a crafted plan) is an error,
    /// not an index out of bounds.
    #[test]
    fn a_call_with_the_wrong_arity_is_an_error() {
        let udf = InCandidates::decode(&json!({"ints": [1, 2]})).unwrap();
        let ids: ArrayRef = Arc::new(datafusion::arrow::array::Int64Array::from(vec![1, 3]));
        let call = |args: Vec<ArrayRef>| {
            udf.inner().invoke_with_args(ScalarFunctionArgs {
                args: args.into_iter().map(ColumnarValue::Array).collect(),
                arg_fields: vec![],
                number_rows: 2,
                return_field: Arc::new(datafusion::arrow::datatypes::Field::new(
                    "c",
                    DataType::Boolean,
                    true,
                )),
                config_options: Default::default(),
            })
        };
        let ColumnarValue::Array(hit) = call(vec![Arc::clone(&ids)]).unwrap() else {
            panic!("an array")
        };
        assert_eq!(hit.as_boolean(), &BooleanArray::from(vec![true, false]));
        for args in [vec![], vec![Arc::clone(&ids), ids]] {
            let err = call(args).unwrap_err().to_string();
            assert!(
                err.contains("metaxy_candidate takes 1 id arguments"),
                "{err}"
            );
        }
    }
}
