//! Reading PostgreSQL results through Spin's `pg4`: the database-unavailable error, and rows
//! decoded by column name with every failure an error, never a panic.
//!
//! Spin 4.0.0-4.0.2 never returns from a `query` whose result has no rows (spinframework/spin
//! issue #3671), so the components' queries always return at least one: "nothing" is a row of
//! NULLs (a one-row source `LEFT JOIN`ed to what is looked for). `Rows::found` skips that row.

use spin_sdk::pg4::{self, Column, DbValue, Decode, RowSet};

/// The database could not answer; details go to the log, not to the client.
#[derive(Debug)]
pub struct Unavailable;

impl From<pg4::Error> for Unavailable {
    fn from(error: pg4::Error) -> Self {
        eprintln!("database error: {error:?}");
        Unavailable
    }
}

impl From<pg4::PgError> for Unavailable {
    fn from(error: pg4::PgError) -> Self {
        eprintln!("database error: {error:?}");
        Unavailable
    }
}

/// The rows of a result, addressed by column name.
pub struct Rows<'a> {
    columns: &'a [Column],
    rows: &'a [Vec<DbValue>],
}

impl<'a> Rows<'a> {
    pub fn of(result: &'a RowSet) -> Self {
        Self {
            columns: &result.columns,
            rows: &result.rows,
        }
    }

    /// The first row; a statement that returns none is a fault (the statements this is used
    /// for always return one).
    pub fn one(&self) -> Result<Row<'a>, Unavailable> {
        self.all().next().ok_or_else(|| {
            eprintln!("a statement that always returns a row returned none");
            Unavailable
        })
    }

    pub fn all(&self) -> impl Iterator<Item = Row<'a>> + use<'a> {
        let columns = self.columns;
        self.rows.iter().map(move |values| Row { columns, values })
    }

    /// The rows whose `key` column is not NULL: what was found, without the row of NULLs an
    /// anchored statement returns when it found nothing.
    pub fn found(&self, key: &'a str) -> impl Iterator<Item = Result<Row<'a>, Unavailable>> + use<'a> {
        self.all()
            .map(move |row| row.is_null(key).map(|null| (row, null)))
            .filter_map(|row| match row {
                Ok((_, true)) => None,
                Ok((row, false)) => Some(Ok(row)),
                Err(error) => Some(Err(error)),
            })
    }

    /// Each row found (see `found`) as `decode` makes it.
    pub fn decode_found<T>(
        &self,
        key: &'a str,
        decode: impl Fn(Row<'a>) -> Result<T, Unavailable>,
    ) -> Result<Vec<T>, Unavailable> {
        self.found(key).map(|row| decode(row?)).collect()
    }

    /// The first row found (see `found`) as `decode` makes it, if any.
    pub fn decode_first<T>(
        &self,
        key: &'a str,
        decode: impl Fn(Row<'a>) -> Result<T, Unavailable>,
    ) -> Result<Option<T>, Unavailable> {
        self.found(key).next().map(|row| decode(row?)).transpose()
    }
}

/// One row of a result.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    columns: &'a [Column],
    values: &'a [DbValue],
}

impl Row<'_> {
    /// The value of `column` as `T`; a missing column or another type is an error.
    pub fn get<T: Decode>(&self, column: &str) -> Result<T, Unavailable> {
        T::decode(self.value(column)?).map_err(|error| {
            eprintln!("column {column}: {error}");
            Unavailable
        })
    }

    pub fn is_null(&self, column: &str) -> Result<bool, Unavailable> {
        Ok(matches!(self.value(column)?, DbValue::DbNull))
    }

    fn value(&self, column: &str) -> Result<&DbValue, Unavailable> {
        self.columns
            .iter()
            .position(|c| c.name == column)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| {
                eprintln!("the result has no column {column}");
                Unavailable
            })
    }
}

#[cfg(test)]
mod tests {
    use spin_sdk::pg4::DbDataType;

    use super::*;

    fn result(names: &[&str], rows: Vec<Vec<DbValue>>) -> RowSet {
        RowSet {
            columns: names
                .iter()
                .map(|name| Column {
                    name: (*name).to_owned(),
                    data_type: DbDataType::Int64,
                })
                .collect(),
            rows,
        }
    }

    #[test]
    fn columns_by_name() {
        let set = result(
            &["id", "title"],
            vec![vec![DbValue::Int64(7), DbValue::Str("t".into())]],
        );
        let row = Rows::of(&set).one().unwrap();
        assert_eq!(row.get::<String>("title").unwrap(), "t");
        assert_eq!(row.get::<i64>("id").unwrap(), 7);
        assert!(row.get::<i64>("missing").is_err());
        assert!(row.get::<String>("id").is_err());
        assert!(row.get::<Option<i64>>("id").unwrap().is_some());
    }

    #[test]
    fn short_rows_are_errors_not_panics() {
        let set = result(&["id", "title"], vec![vec![DbValue::Int64(7)]]);
        let row = Rows::of(&set).one().unwrap();
        assert!(row.get::<String>("title").is_err());
        assert!(Rows::of(&result(&["id"], vec![])).one().is_err());
    }

    #[test]
    fn the_row_of_nulls_is_not_found() {
        let nothing = result(&["id"], vec![vec![DbValue::DbNull]]);
        assert_eq!(Rows::of(&nothing).found("id").count(), 0);
        let two = result(&["id"], vec![vec![DbValue::Int64(1)], vec![DbValue::Int64(2)]]);
        let ids: Vec<i64> = Rows::of(&two)
            .found("id")
            .map(|row| row.and_then(|row| row.get("id")))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, [1, 2]);
        assert!(Rows::of(&two).found("other").all(|row| row.is_err()));
        let id = |row: Row<'_>| row.get::<i64>("id");
        assert_eq!(Rows::of(&two).decode_found("id", id).unwrap(), [1, 2]);
        assert_eq!(Rows::of(&two).decode_first("id", id).unwrap(), Some(1));
        assert_eq!(Rows::of(&nothing).decode_first("id", id).unwrap(), None);
        assert!(Rows::of(&nothing).decode_found("id", id).unwrap().is_empty());
    }
}
