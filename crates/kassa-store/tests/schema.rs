//! One schema, two migration folders: both are applied to fresh databases and what they made is
//! compared — tables, columns, each column's kind and nullability, and the named indexes. The
//! folders are kept equal by hand; this test is what makes "kept equal" true.

use std::collections::BTreeMap;

use kassa_testkit::TestDb;
use sqlx::Row;

/// A column as both databases can say it: its kind (integer or text; SQLite's INTEGER and
/// PostgreSQL's BIGINT are one kind) and whether it may be null.
type Columns = BTreeMap<String, (String, bool)>;

fn kind(declared: &str) -> String {
    let declared = declared.to_ascii_lowercase();
    if declared.contains("int") {
        "integer".into()
    } else if declared.contains("char") || declared.contains("text") {
        "text".into()
    } else {
        declared
    }
}

async fn sqlite_schema(db: &TestDb) -> (BTreeMap<String, Columns>, Vec<(String, String)>) {
    let pool = sqlx::AnyPool::connect(&db.url).await.expect("pool");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table'
           AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .expect("tables");
    let mut schema = BTreeMap::new();
    for table in &tables {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info('{table}')"
        )))
        .fetch_all(&pool)
        .await
        .expect("columns");
        let columns = rows
            .iter()
            .map(|row| {
                let name: String = row.get("name");
                let declared: String = row.get("type");
                let not_null: i64 = row.get("notnull");
                let key: i64 = row.get("pk");
                // A primary key is never null, whether or not its column says so.
                (name, (kind(&declared), not_null == 0 && key == 0))
            })
            .collect();
        schema.insert(table.clone(), columns);
    }
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT tbl_name, name FROM sqlite_master WHERE type = 'index'
           AND name NOT LIKE 'sqlite_autoindex_%' ORDER BY tbl_name, name",
    )
    .fetch_all(&pool)
    .await
    .expect("indexes");
    pool.close().await;
    (schema, indexes)
}

async fn postgres_schema(db: &TestDb) -> (BTreeMap<String, Columns>, Vec<(String, String)>) {
    let pool = sqlx::AnyPool::connect(&db.url).await.expect("pool");
    let rows = sqlx::query(
        "SELECT c.table_name::text AS table_name, c.column_name::text AS column_name,
                c.data_type::text AS data_type, c.is_nullable::text AS is_nullable
         FROM information_schema.columns c
         JOIN information_schema.tables t
           ON t.table_name = c.table_name AND t.table_schema = c.table_schema
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
           AND c.table_name <> '_sqlx_migrations'
         ORDER BY c.table_name, c.column_name",
    )
    .fetch_all(&pool)
    .await
    .expect("columns");
    let mut schema: BTreeMap<String, Columns> = BTreeMap::new();
    for row in &rows {
        let table: String = row.get("table_name");
        let column: String = row.get("column_name");
        let data_type: String = row.get("data_type");
        let nullable: String = row.get("is_nullable");
        schema
            .entry(table)
            .or_default()
            .insert(column, (kind(&data_type), nullable == "YES"));
    }
    // Named indexes only: those behind primary keys and UNIQUE constraints are PostgreSQL's
    // own names for what SQLite calls its autoindexes.
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.tablename::text, i.indexname::text FROM pg_indexes i
         WHERE i.schemaname = 'public' AND i.tablename <> '_sqlx_migrations'
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
         ORDER BY i.tablename, i.indexname",
    )
    .fetch_all(&pool)
    .await
    .expect("indexes");
    pool.close().await;
    (schema, indexes)
}

#[tokio::test]
async fn both_migration_folders_make_the_same_schema() {
    let sqlite = TestDb::sqlite().await;
    let postgres = TestDb::postgres().await;
    let (lite_tables, lite_indexes) = sqlite_schema(&sqlite).await;
    let (pg_tables, pg_indexes) = postgres_schema(&postgres).await;
    assert!(
        lite_tables.len() > 10,
        "the schema was made: {lite_tables:?}"
    );
    assert_eq!(
        lite_tables.keys().collect::<Vec<_>>(),
        pg_tables.keys().collect::<Vec<_>>(),
        "the same tables"
    );
    for (table, columns) in &lite_tables {
        assert_eq!(
            Some(columns),
            pg_tables.get(table),
            "table {table}: the same columns, kinds and nullability"
        );
    }
    assert_eq!(lite_indexes, pg_indexes, "the same named indexes");
}
