//! Values both ways, with Spin 3.6's mapping: a guest's parameter to the one Rust type Spin
//! binds it as (PostgreSQL's inferred type must accept it: no coercion), and a result value to
//! the guest's `db-value` by its column type.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use super::bindings::spin::postgres::postgres::{
    self as pg, Column, DbDataType, DbValue, ParameterValue, RowSet,
};
use super::session::SqlParam;

type BoxError = Box<dyn std::error::Error + Sync + Send>;

pub fn to_sql_params(params: Vec<ParameterValue>) -> Result<Vec<SqlParam>, String> {
    params.into_iter().map(to_sql_param).collect()
}

/// One Rust type per variant, as in Spin: PostgreSQL's inferred parameter type must accept it
/// (no coercion, so a `str` does not bind to a `date`).
fn to_sql_param(value: ParameterValue) -> Result<SqlParam, String> {
    Ok(match value {
        ParameterValue::Boolean(v) => Box::new(v),
        ParameterValue::Int8(v) => Box::new(v),
        ParameterValue::Int16(v) => Box::new(v),
        ParameterValue::Int32(v) => Box::new(v),
        ParameterValue::Int64(v) => Box::new(v),
        ParameterValue::Floating32(v) => Box::new(v),
        ParameterValue::Floating64(v) => Box::new(v),
        ParameterValue::Str(v) => Box::new(v),
        ParameterValue::Binary(v) => Box::new(v),
        ParameterValue::Date((y, m, d)) => Box::new(
            NaiveDate::from_ymd_opt(y, m.into(), d.into())
                .ok_or_else(|| format!("invalid date y={y}, m={m}, d={d}"))?,
        ),
        ParameterValue::Time((h, m, s, ns)) => Box::new(
            NaiveTime::from_hms_nano_opt(h.into(), m.into(), s.into(), ns)
                .ok_or_else(|| format!("invalid time {h}:{m}:{s}:{ns}"))?,
        ),
        ParameterValue::Datetime((y, mo, d, h, mi, s, ns)) => {
            let date = NaiveDate::from_ymd_opt(y, mo.into(), d.into());
            let time = NaiveTime::from_hms_nano_opt(h.into(), mi.into(), s.into(), ns);
            match (date, time) {
                (Some(date), Some(time)) => Box::new(NaiveDateTime::new(date, time)),
                _ => return Err("invalid datetime".into()),
            }
        }
        ParameterValue::Timestamp(v) => Box::new(
            chrono::DateTime::from_timestamp(v, 0).ok_or_else(|| format!("invalid epoch timestamp {v}"))?,
        ),
        ParameterValue::Uuid(v) => {
            Box::new(uuid::Uuid::parse_str(&v).map_err(|e| format!("invalid uuid {v:?}: {e}"))?)
        }
        ParameterValue::Jsonb(v) => Box::new(
            serde_json::from_slice::<serde_json::Value>(&v).map_err(|e| format!("invalid JSON: {e}"))?,
        ),
        ParameterValue::Decimal(v) => Box::new(
            rust_decimal::Decimal::from_str_exact(&v).map_err(|e| format!("invalid decimal {v:?}: {e}"))?,
        ),
        ParameterValue::ArrayInt32(v) => Box::new(v),
        ParameterValue::ArrayInt64(v) => Box::new(v),
        ParameterValue::ArrayStr(v) => Box::new(v),
        ParameterValue::ArrayDecimal(v) => Box::new(
            v.into_iter()
                .map(|d| d.map(|d| rust_decimal::Decimal::from_str_exact(&d)).transpose())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("invalid decimal: {e}"))?,
        ),
        ParameterValue::Interval(i) => Box::new(Interval(i)),
        ParameterValue::DbNull => Box::new(Null),
        ParameterValue::RangeInt32(_) | ParameterValue::RangeInt64(_) | ParameterValue::RangeDecimal(_) => {
            return Err("devhost does not implement range parameters".into());
        }
    })
}

/// SQL NULL for a parameter of any type.
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(&self, _: &Type, _: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[derive(Debug)]
struct Interval(pg::Interval);

impl ToSql for Interval {
    fn to_sql(&self, _: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        use bytes::BufMut;
        out.put_i64(self.0.micros);
        out.put_i32(self.0.days);
        out.put_i32(self.0.months);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Interval {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        if raw.len() != 16 {
            return Err("an interval is 16 bytes".into());
        }
        let micros = i64::from_be_bytes(raw[0..8].try_into()?);
        let days = i32::from_be_bytes(raw[8..12].try_into()?);
        let months = i32::from_be_bytes(raw[12..16].try_into()?);
        Ok(Interval(pg::Interval { micros, days, months }))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
}

/// The raw bytes of a value of a type the WIT has no variant for.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Like Spin, the columns come from the first row, so an empty result has no columns.
pub fn to_row_set(rows: &[Row]) -> Result<RowSet, String> {
    let columns = match rows.first() {
        Some(row) => row
            .columns()
            .iter()
            .map(|c| Column {
                name: c.name().to_owned(),
                data_type: data_type(c.type_()),
            })
            .collect(),
        None => Vec::new(),
    };
    let rows = rows
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|index| db_value(&RowField { row, index }))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()?;
    Ok(RowSet { columns, rows })
}

fn data_type(ty: &Type) -> DbDataType {
    match *ty {
        Type::BOOL => DbDataType::Boolean,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => DbDataType::Str,
        Type::BYTEA => DbDataType::Binary,
        Type::DATE => DbDataType::Date,
        Type::TIME => DbDataType::Time,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        Type::UUID => DbDataType::Uuid,
        Type::JSONB => DbDataType::Jsonb,
        Type::NUMERIC => DbDataType::Decimal,
        Type::INT4_ARRAY => DbDataType::ArrayInt32,
        Type::INT8_ARRAY => DbDataType::ArrayInt64,
        Type::NUMERIC_ARRAY => DbDataType::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => DbDataType::ArrayStr,
        Type::INTERVAL => DbDataType::Interval,
        _ => DbDataType::Other(ty.name().to_owned()),
    }
}

/// One value of a result, read as a Rust type (a trait so that the mapping can be tested on
/// encoded values, without a server).
trait Field<'a> {
    fn ty(&self) -> &Type;

    fn get<T: FromSql<'a>>(&self) -> Result<Option<T>, String>;
}

struct RowField<'a> {
    row: &'a Row,
    index: usize,
}

impl<'a> Field<'a> for RowField<'a> {
    fn ty(&self) -> &Type {
        self.row.columns()[self.index].type_()
    }

    fn get<T: FromSql<'a>>(&self) -> Result<Option<T>, String> {
        self.row
            .try_get::<_, Option<T>>(self.index)
            .map_err(|e| format!("{e:?}"))
    }
}

fn or_null<T>(value: Option<T>, variant: impl FnOnce(T) -> DbValue) -> DbValue {
    value.map_or(DbValue::DbNull, variant)
}

fn db_value<'a>(field: &impl Field<'a>) -> Result<DbValue, String> {
    Ok(match *field.ty() {
        Type::BOOL => or_null(field.get()?, DbValue::Boolean),
        Type::INT2 => or_null(field.get()?, DbValue::Int16),
        Type::INT4 => or_null(field.get()?, DbValue::Int32),
        Type::INT8 => or_null(field.get()?, DbValue::Int64),
        Type::FLOAT4 => or_null(field.get()?, DbValue::Floating32),
        Type::FLOAT8 => or_null(field.get()?, DbValue::Floating64),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => or_null(field.get()?, DbValue::Str),
        Type::BYTEA => or_null(field.get()?, DbValue::Binary),
        Type::DATE => or_null(field.get::<NaiveDate>()?, |d| {
            DbValue::Date((d.year(), d.month() as u8, d.day() as u8))
        }),
        Type::TIME => or_null(field.get::<NaiveTime>()?, |t| {
            DbValue::Time((t.hour() as u8, t.minute() as u8, t.second() as u8, t.nanosecond()))
        }),
        // Spin 3.6 reads timestamptz as a NaiveDateTime too, which fails even for NULL: so
        // does devhost, or an app could work here and fail on Spin.
        Type::TIMESTAMP | Type::TIMESTAMPTZ => or_null(field.get::<NaiveDateTime>()?, datetime),
        Type::UUID => or_null(field.get::<uuid::Uuid>()?, |u| DbValue::Uuid(u.to_string())),
        Type::JSONB => or_null(field.get::<serde_json::Value>()?, |v| {
            DbValue::Jsonb(serde_json::to_vec(&v).unwrap_or_default())
        }),
        Type::NUMERIC => or_null(field.get::<rust_decimal::Decimal>()?, |d| {
            DbValue::Decimal(d.to_string())
        }),
        Type::INT4_ARRAY => or_null(field.get()?, DbValue::ArrayInt32),
        Type::INT8_ARRAY => or_null(field.get()?, DbValue::ArrayInt64),
        Type::NUMERIC_ARRAY => or_null(field.get::<Vec<Option<rust_decimal::Decimal>>>()?, |v| {
            DbValue::ArrayDecimal(v.into_iter().map(|d| d.map(|d| d.to_string())).collect())
        }),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => {
            or_null(field.get()?, DbValue::ArrayStr)
        }
        Type::INTERVAL => or_null(field.get::<Interval>()?, |i| DbValue::Interval(i.0)),
        _ => or_null(field.get::<Raw>()?, |raw| DbValue::Unsupported(raw.0)),
    })
}

fn datetime(t: NaiveDateTime) -> DbValue {
    DbValue::Datetime((
        t.year(),
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
        t.nanosecond(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pg::RangeBoundKind;

    /// A value as PostgreSQL sends it (binary format), read the way `Row::try_get` reads one.
    struct Encoded<'a> {
        ty: Type,
        raw: Option<&'a [u8]>,
    }

    impl<'a> Field<'a> for Encoded<'a> {
        fn ty(&self) -> &Type {
            &self.ty
        }

        fn get<T: FromSql<'a>>(&self) -> Result<Option<T>, String> {
            if !<Option<T> as FromSql>::accepts(&self.ty) {
                return Err(format!("WrongType {{ postgres: {} }}", self.ty));
            }
            Option::<T>::from_sql_nullable(&self.ty, self.raw).map_err(|e| e.to_string())
        }
    }

    /// `value` bound to a parameter of type `ty`, as PostgreSQL receives it.
    fn bind(value: ParameterValue, ty: &Type) -> Result<Option<Vec<u8>>, String> {
        let param = to_sql_param(value)?;
        let mut out = bytes::BytesMut::new();
        match param.to_sql_checked(ty, &mut out).map_err(|e| e.to_string())? {
            IsNull::Yes => Ok(None),
            IsNull::No => Ok(Some(out.to_vec())),
        }
    }

    /// `value` bound as `ty`, then read back as a result value of that type.
    fn round_trip(value: ParameterValue, ty: Type) -> String {
        let raw = bind(value, &ty).unwrap_or_else(|e| panic!("binding as {ty}: {e}"));
        let read = db_value(&Encoded {
            ty: ty.clone(),
            raw: raw.as_deref(),
        });
        format!("{:?}", read.unwrap_or_else(|e| panic!("reading {ty}: {e}")))
    }

    fn shown(value: DbValue) -> String {
        format!("{value:?}")
    }

    #[test]
    fn each_parameter_reads_back_as_the_value_of_its_type() {
        let cases = [
            (ParameterValue::Boolean(true), Type::BOOL, DbValue::Boolean(true)),
            (ParameterValue::Int16(-2), Type::INT2, DbValue::Int16(-2)),
            (ParameterValue::Int32(7), Type::INT4, DbValue::Int32(7)),
            (
                ParameterValue::Int64(1 << 40),
                Type::INT8,
                DbValue::Int64(1 << 40),
            ),
            (
                ParameterValue::Floating32(1.5),
                Type::FLOAT4,
                DbValue::Floating32(1.5),
            ),
            (
                ParameterValue::Floating64(-0.25),
                Type::FLOAT8,
                DbValue::Floating64(-0.25),
            ),
            (
                ParameterValue::Str("x".into()),
                Type::TEXT,
                DbValue::Str("x".into()),
            ),
            (
                ParameterValue::Str("y".into()),
                Type::VARCHAR,
                DbValue::Str("y".into()),
            ),
            (
                ParameterValue::Binary(vec![0, 255]),
                Type::BYTEA,
                DbValue::Binary(vec![0, 255]),
            ),
            (
                ParameterValue::Date((2024, 2, 29)),
                Type::DATE,
                DbValue::Date((2024, 2, 29)),
            ),
            (
                ParameterValue::Time((23, 59, 58, 500)),
                Type::TIME,
                DbValue::Time((23, 59, 58, 0)),
            ),
            (
                ParameterValue::Datetime((2024, 2, 29, 12, 34, 56, 500_000_000)),
                Type::TIMESTAMP,
                DbValue::Datetime((2024, 2, 29, 12, 34, 56, 500_000_000)),
            ),
            (
                ParameterValue::Uuid("67e55044-10b1-426f-9247-bb680e5fe0c8".into()),
                Type::UUID,
                DbValue::Uuid("67e55044-10b1-426f-9247-bb680e5fe0c8".into()),
            ),
            (
                ParameterValue::Jsonb(br#"{"a": [1, null]}"#.to_vec()),
                Type::JSONB,
                DbValue::Jsonb(br#"{"a":[1,null]}"#.to_vec()),
            ),
            (
                ParameterValue::Decimal("12.50".into()),
                Type::NUMERIC,
                DbValue::Decimal("12.50".into()),
            ),
            (
                ParameterValue::ArrayInt32(vec![Some(1), None]),
                Type::INT4_ARRAY,
                DbValue::ArrayInt32(vec![Some(1), None]),
            ),
            (
                ParameterValue::ArrayInt64(vec![Some(-1)]),
                Type::INT8_ARRAY,
                DbValue::ArrayInt64(vec![Some(-1)]),
            ),
            (
                ParameterValue::ArrayStr(vec![Some("a".into()), None]),
                Type::TEXT_ARRAY,
                DbValue::ArrayStr(vec![Some("a".into()), None]),
            ),
            (
                ParameterValue::ArrayDecimal(vec![Some("0.1".into()), None]),
                Type::NUMERIC_ARRAY,
                DbValue::ArrayDecimal(vec![Some("0.1".into()), None]),
            ),
            (
                ParameterValue::Interval(pg::Interval {
                    micros: -1,
                    days: 2,
                    months: 3,
                }),
                Type::INTERVAL,
                DbValue::Interval(pg::Interval {
                    micros: -1,
                    days: 2,
                    months: 3,
                }),
            ),
        ];
        for (value, ty, expected) in cases {
            let name = format!("{value:?} as {ty}");
            assert_eq!(round_trip(value, ty), shown(expected), "{name}");
        }
    }

    #[test]
    fn null_binds_to_any_type_and_reads_as_db_null() {
        for ty in [Type::INT4, Type::TEXT, Type::DATE, Type::JSONB, Type::INET] {
            assert_eq!(round_trip(ParameterValue::DbNull, ty), shown(DbValue::DbNull));
        }
    }

    #[test]
    fn a_value_binds_only_to_its_own_type() {
        // Spin does not coerce: the type PostgreSQL inferred must accept the variant's type.
        for (value, ty) in [
            (ParameterValue::Str("2024-01-01".into()), Type::DATE),
            (ParameterValue::Int32(7), Type::INT8),
            (ParameterValue::Int64(7), Type::INT4),
            (ParameterValue::Timestamp(0), Type::TIMESTAMP),
        ] {
            let name = format!("{value:?} as {ty}");
            let error = bind(value, &ty).expect_err(&name);
            assert!(error.contains("cannot convert"), "{name}: {error}");
        }
        assert!(bind(ParameterValue::Timestamp(0), &Type::TIMESTAMPTZ).is_ok());
    }

    #[test]
    fn invalid_values_are_refused_before_binding() {
        let bound = |value| to_sql_param(value).err().unwrap_or_default();
        assert_eq!(
            bound(ParameterValue::Date((2023, 2, 29))),
            "invalid date y=2023, m=2, d=29"
        );
        assert_eq!(
            bound(ParameterValue::Time((24, 0, 0, 0))),
            "invalid time 24:0:0:0"
        );
        assert_eq!(
            bound(ParameterValue::Datetime((2024, 13, 1, 0, 0, 0, 0))),
            "invalid datetime"
        );
        assert_eq!(
            bound(ParameterValue::Timestamp(i64::MAX)),
            format!("invalid epoch timestamp {}", i64::MAX)
        );
        assert!(bound(ParameterValue::Uuid("nope".into())).starts_with("invalid uuid \"nope\""));
        assert!(bound(ParameterValue::Jsonb(b"{".to_vec())).starts_with("invalid JSON"));
        assert!(bound(ParameterValue::Decimal("1e".into())).starts_with("invalid decimal \"1e\""));
        assert!(bound(ParameterValue::ArrayDecimal(vec![Some("x".into())])).starts_with("invalid decimal"));
        let range = ParameterValue::RangeInt32((Some((1, RangeBoundKind::Inclusive)), None));
        assert_eq!(bound(range), "devhost does not implement range parameters");
        // The first invalid parameter refuses the whole list.
        let params = vec![ParameterValue::Int32(1), ParameterValue::Uuid("x".into())];
        assert!(to_sql_params(params).is_err());
    }

    #[test]
    fn timestamptz_cannot_be_read_even_when_null() {
        // As in Spin 3.6, which reads it as a NaiveDateTime.
        for raw in [None, Some(&[0u8; 8][..])] {
            let read = db_value(&Encoded {
                ty: Type::TIMESTAMPTZ,
                raw,
            });
            assert!(read.is_err(), "{read:?}");
        }
        assert!(matches!(data_type(&Type::TIMESTAMPTZ), DbDataType::Datetime));
    }

    #[test]
    fn other_types_are_unsupported_with_their_bytes() {
        let read = db_value(&Encoded {
            ty: Type::INET,
            raw: Some(&[2, 32, 0, 4, 127, 0, 0, 1]),
        });
        assert_eq!(
            format!("{read:?}"),
            "Ok(DbValue::Unsupported([2, 32, 0, 4, 127, 0, 0, 1]))"
        );
        assert_eq!(
            format!("{:?}", data_type(&Type::INET)),
            "DbDataType::Other(\"inet\")"
        );
        assert_eq!(
            format!("{:?}", data_type(&Type::INT4_RANGE)),
            "DbDataType::Other(\"int4range\")"
        );
    }

    #[test]
    fn column_types_map_as_in_spin() {
        let cases = [
            (Type::BPCHAR, "Str"),
            (Type::VARCHAR_ARRAY, "ArrayStr"),
            (Type::BPCHAR_ARRAY, "ArrayStr"),
            (Type::NUMERIC_ARRAY, "ArrayDecimal"),
            (Type::TIMESTAMP, "Datetime"),
            (Type::JSON, "Other(\"json\")"),
            (Type::INT2_ARRAY, "Other(\"_int2\")"),
        ];
        for (ty, expected) in cases {
            assert_eq!(
                format!("{:?}", data_type(&ty)),
                format!("DbDataType::{expected}"),
                "{ty}"
            );
        }
    }
}
