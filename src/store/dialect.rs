//! Which SQL dialect a backend speaks: what the schema (`schema.rs`) and the connection
//! (`db.rs`) both need, kept below both.

/// Which SQL dialect a backend speaks (only the schema's id and blob types differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SQLite, in a file or in memory.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}
