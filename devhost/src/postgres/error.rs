//! A failed statement as Spin 3.6 reports it: `query-failed`, with PostgreSQL's structured
//! error (SQLSTATE, severity, message, detail and the other fields, in Spin's order) when the
//! server raised one, and the error's debug text otherwise.

use super::bindings::spin::postgres::postgres::{DbError, Error as PgError, QueryError};

pub fn query_failed(error: tokio_postgres::Error) -> PgError {
    let as_text = format!("{error:?}");
    match error.as_db_error() {
        Some(db) => PgError::QueryFailed(QueryError::DbError(DbError {
            as_text,
            severity: db.severity().to_owned(),
            code: db.code().code().to_owned(),
            message: db.message().to_owned(),
            detail: db.detail().map(str::to_owned),
            extras: db_error_extras(db),
        })),
        None => PgError::QueryFailed(QueryError::Text(as_text)),
    }
}

fn db_error_extras(db: &tokio_postgres::error::DbError) -> Vec<(String, String)> {
    let line = db.line().map(|line| line.to_string());
    let fields = [
        ("column", db.column()),
        ("constraint", db.constraint()),
        ("routine", db.routine()),
        ("hint", db.hint()),
        ("table", db.table()),
        ("datatype", db.datatype()),
        ("schema", db.schema()),
        ("file", db.file()),
        ("line", line.as_deref()),
        ("where_", db.where_()),
    ];
    fields
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name.to_owned(), v.to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// The error tokio-postgres returns when a server answers the start-up message with an
    /// `ErrorResponse` made of `fields`: a real, parsed database error, without a database.
    async fn error_from_server(fields: &[(u8, &str)]) -> tokio_postgres::Error {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut body = Vec::new();
        for (code, value) in fields {
            body.push(*code);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut length = [0u8; 4];
            stream.read_exact(&mut length).unwrap();
            let mut startup = vec![0u8; u32::from_be_bytes(length) as usize - 4];
            stream.read_exact(&mut startup).unwrap();
            let mut message = vec![b'E'];
            message.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
            message.extend_from_slice(&body);
            stream.write_all(&message).unwrap();
        });
        let config = format!("host=127.0.0.1 port={port} user=u dbname=d sslmode=disable");
        let error = tokio_postgres::connect(&config, tokio_postgres::NoTls)
            .await
            .err()
            .expect("the server refuses");
        server.join().unwrap();
        error
    }

    #[tokio::test]
    async fn a_database_error_keeps_its_fields_in_spins_order() {
        let error = error_from_server(&[
            (b'S', "ERROR"),
            (b'V', "ERROR"),
            (b'C', "23505"),
            (
                b'M',
                "duplicate key value violates unique constraint \"events_pkey\"",
            ),
            (b'D', "Key (id)=(1) already exists."),
            (b'H', "pick another id"),
            (b's', "public"),
            (b't', "events"),
            (b'n', "events_pkey"),
            (b'F', "nbtinsert.c"),
            (b'L', "666"),
            (b'R', "_bt_check_unique"),
        ])
        .await;
        let as_text = format!("{error:?}");
        let PgError::QueryFailed(QueryError::DbError(db)) = query_failed(error) else {
            panic!("not a database error");
        };
        assert_eq!(db.as_text, as_text);
        assert_eq!(db.severity, "ERROR");
        assert_eq!(db.code, "23505");
        assert_eq!(
            db.message,
            "duplicate key value violates unique constraint \"events_pkey\""
        );
        assert_eq!(db.detail.as_deref(), Some("Key (id)=(1) already exists."));
        let extras: Vec<(&str, &str)> = db.extras.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            extras,
            [
                ("constraint", "events_pkey"),
                ("routine", "_bt_check_unique"),
                ("hint", "pick another id"),
                ("table", "events"),
                ("schema", "public"),
                ("file", "nbtinsert.c"),
                ("line", "666"),
            ]
        );
    }

    #[tokio::test]
    async fn a_database_error_without_optional_fields_has_no_extras() {
        let error = error_from_server(&[
            (b'S', "FATAL"),
            (b'C', "28P01"),
            (b'M', "password authentication failed"),
        ])
        .await;
        let PgError::QueryFailed(QueryError::DbError(db)) = query_failed(error) else {
            panic!("not a database error");
        };
        assert_eq!((db.severity.as_str(), db.code.as_str()), ("FATAL", "28P01"));
        assert_eq!(db.detail, None);
        assert!(db.extras.is_empty(), "{:?}", db.extras);
    }

    #[tokio::test]
    async fn an_error_the_server_did_not_raise_is_text() {
        // Nothing listens on the port of a listener just closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let config = format!("host=127.0.0.1 port={port} user=u sslmode=disable");
        let error = tokio_postgres::connect(&config, tokio_postgres::NoTls)
            .await
            .err()
            .expect("nothing listens");
        let as_text = format!("{error:?}");
        match query_failed(error) {
            PgError::QueryFailed(QueryError::Text(text)) => assert_eq!(text, as_text),
            other => panic!("{other:?}"),
        }
    }
}
