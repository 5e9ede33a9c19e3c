//! One database connection behind a lock, for either backend: opening it (the directory and
//! file for SQLite, the URL for PostgreSQL), checking and migrating the schema, and turning
//! the driver's errors into [`StoreError`]s that name what failed and where.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::AnyConnection;
use sqlx::{Connection, Executor, Row};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

pub use super::dialect::Kind;
use super::schema;
use super::StoreError;

/// The SQLite file's name inside the data directory.
pub const FILE_NAME: &str = "watchfire.db";

/// How long a PostgreSQL connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long SQLite waits on a lock held by another connection.
const BUSY_TIMEOUT_MS: u32 = 5_000;

/// Where a backend keeps its data.
#[derive(Debug, Clone)]
pub enum Place {
    /// An in-memory SQLite database (lost when the connection closes).
    Memory,
    /// A SQLite file in this data directory.
    Dir(PathBuf),
    /// A PostgreSQL URL.
    Url(String),
}

impl Place {
    /// The dialect.
    pub fn kind(&self) -> Kind {
        match self {
            Place::Url(_) => Kind::Postgres,
            _ => Kind::Sqlite,
        }
    }

    /// The backend's name, as `StoreStatus::backend` gives it.
    pub fn backend(&self) -> &'static str {
        match self {
            Place::Memory => "memory",
            Place::Dir(_) => "sqlite",
            Place::Url(_) => "postgres",
        }
    }

    /// Where, for messages: the SQLite file's path, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Place::Memory => "the in-memory store".to_string(),
            Place::Dir(d) => d.join(FILE_NAME).display().to_string(),
            Place::Url(u) => crate::redact::url(u).into_owned(),
        }
    }
}

/// One connection to a backend, made on first use and again after [`Backend::reset`].
pub struct Backend {
    /// Where.
    pub place: Place,
    conn: Mutex<Option<AnyConnection>>,
    /// The SQLite file's device and inode when connected: SQLite in WAL mode goes on writing
    /// to a file deleted or moved while open, so the writer checks the path still names it.
    file_id: std::sync::Mutex<Option<(u64, u64)>>,
}

impl Backend {
    /// A backend for `place`, not yet connected.
    pub fn new(place: Place) -> Backend {
        Backend {
            place,
            conn: Mutex::new(None),
            file_id: std::sync::Mutex::new(None),
        }
    }

    /// Fails when the SQLite file connected to is no longer at its path (deleted or moved).
    pub fn check_file(&self) -> Result<(), StoreError> {
        let Place::Dir(dir) = &self.place else {
            return Ok(());
        };
        let known = *self.file_id.lock().expect("store file id lock poisoned");
        let Some(known) = known else { return Ok(()) };
        let path = dir.join(FILE_NAME);
        match std::fs::metadata(&path) {
            Ok(m) if (m.dev(), m.ino()) == known => Ok(()),
            _ => Err(StoreError::Gone {
                place: path.display().to_string(),
            }),
        }
    }

    /// The connection, made (and the schema checked and migrated) when there is none.
    pub async fn conn(&self) -> Result<MappedMutexGuard<'_, AnyConnection>, StoreError> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = Some(connect(&self.place).await?);
            if let Place::Dir(dir) = &self.place {
                let m =
                    std::fs::metadata(dir.join(FILE_NAME)).map_err(|e| StoreError::Directory {
                        path: dir.join(FILE_NAME),
                        source: e,
                    })?;
                *self.file_id.lock().expect("store file id lock poisoned") =
                    Some((m.dev(), m.ino()));
            }
        }
        Ok(MutexGuard::map(guard, |c| {
            c.as_mut().expect("connection just made")
        }))
    }

    /// Drops the connection: the next use connects again (for an in-memory database, to a new
    /// empty one).
    pub async fn reset(&self) {
        if let Some(c) = self.conn.lock().await.take() {
            // A broken connection may not close cleanly; it is gone either way.
            let _ = tokio::time::timeout(Duration::from_secs(1), c.close()).await;
        }
    }
}

/// Connects to `place`, checks that the database is watchfire's (or empty) and migrates it.
async fn connect(place: &Place) -> Result<AnyConnection, StoreError> {
    sqlx::any::install_default_drivers();
    let mut conn = match place {
        Place::Memory => AnyConnection::connect("sqlite::memory:")
            .await
            .map_err(|e| classify(e, place))?,
        Place::Dir(dir) => {
            let url = prepare_dir(dir)?;
            AnyConnection::connect(&url)
                .await
                .map_err(|e| classify(e, place))?
        }
        Place::Url(url) => connect_postgres(url, place).await?,
    };
    if place.kind() == Kind::Sqlite {
        conn.execute(format!("PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}").as_str())
            .await
            .map_err(|e| classify(e, place))?;
    }
    check_and_migrate(&mut conn, place).await?;
    if let Place::Dir(_) = place {
        // Only once the file is known to be watchfire's: WAL mode changes the file.
        conn.execute("PRAGMA journal_mode = WAL")
            .await
            .map_err(|e| classify(e, place))?;
    }
    Ok(conn)
}

/// Checks a PostgreSQL URL's form, then connects within [`CONNECT_TIMEOUT`].
async fn connect_postgres(url: &str, place: &Place) -> Result<AnyConnection, StoreError> {
    let shown = place.describe();
    let parsed = url::Url::parse(url).map_err(|e| StoreError::BadUrl {
        url: shown.clone(),
        reason: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(StoreError::BadUrl {
            url: shown,
            reason: format!(
                "scheme {:?} is not postgres:// or postgresql://",
                parsed.scheme()
            ),
        });
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(StoreError::BadUrl {
            url: shown,
            reason: "no host".to_string(),
        });
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, AnyConnection::connect(url)).await {
        Ok(r) => r.map_err(|e| classify(e, place)),
        Err(_) => Err(StoreError::Unreachable {
            place: shown,
            reason: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        }),
    }
}

/// Makes the data directory (0700) and the empty database file (0600) when missing, and
/// returns the SQLite URL of the file.
fn prepare_dir(dir: &Path) -> Result<String, StoreError> {
    let dir_err = |source: std::io::Error| StoreError::Directory {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(dir_err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "it exists and is not a directory",
            )))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_error(dir, e))?,
        Err(e) => return Err(dir_err(e)),
    }
    let file = dir.join(FILE_NAME);
    if file.exists() {
        // SQLite would open a read-only file read-only and fail only at the first write.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .map_err(|e| io_error(&file, e))?;
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .map_err(|e| io_error(&file, e))?;
    }
    Ok(format!("sqlite://{}?mode=rw", encode_path(&file)))
}

/// An I/O error making `path`, as the store error it means.
fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::PermissionDenied | K::ReadOnlyFilesystem => StoreError::ReadOnly {
            place: path.display().to_string(),
        },
        K::StorageFull | K::QuotaExceeded => StoreError::Full {
            place: path.display().to_string(),
        },
        _ => StoreError::Directory {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// Percent-encodes a path for a `sqlite://` URL (which is decoded again when parsed).
fn encode_path(p: &Path) -> String {
    let mut out = String::new();
    for b in p.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(b) {
            out.push(*b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The PostgreSQL advisory lock held while the schema is checked and migrated (any constant
/// of the store's own): members starting at the same instant on one database migrate one at a
/// time, and each after the first finds the schema made.
const MIGRATION_LOCK: i64 = 0x7761_7463_685f_7363;

/// [`migrate`] under [`MIGRATION_LOCK`] on PostgreSQL (a session lock, released however the
/// migration ends; a connection that breaks meanwhile releases it with its session).
async fn check_and_migrate(conn: &mut AnyConnection, place: &Place) -> Result<(), StoreError> {
    if place.kind() != Kind::Postgres {
        return migrate(conn, place).await;
    }
    let err = |e| classify(e, place);
    // `SELECT 1 FROM f()`: the function's void result is not a type the Any driver decodes.
    sqlx::query("SELECT 1 FROM pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(err)?;
    let done = migrate(conn, place).await;
    let unlocked = sqlx::query("SELECT 1 FROM pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(err);
    done.and(unlocked.map(drop))
}

/// Refuses a database that is not watchfire's or is newer than this binary; creates or
/// migrates the schema otherwise.
async fn migrate(conn: &mut AnyConnection, place: &Place) -> Result<(), StoreError> {
    let kind = place.kind();
    let err = |e| classify(e, place);
    let tables: Vec<String> = sqlx::query(schema::list_tables(kind))
        .fetch_all(&mut *conn)
        .await
        .map_err(err)?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let version = if tables.iter().any(|t| t == schema::SCHEMA_TABLE) {
        let row = sqlx::query("SELECT MAX(version) FROM watchfire_schema")
            .fetch_one(&mut *conn)
            .await
            .map_err(err)?;
        row.try_get::<Option<i64>, _>(0).map_err(err)?.unwrap_or(0)
    } else if tables.is_empty() {
        0
    } else {
        let mut tables = tables;
        tables.sort();
        return Err(StoreError::Foreign {
            place: place.describe(),
            tables: tables.join(", "),
        });
    };
    if version > schema::VERSION {
        return Err(StoreError::NewerSchema {
            place: place.describe(),
            found: version,
            known: schema::VERSION,
        });
    }
    for i in version as usize..schema::count() {
        let mut tx = conn.begin().await.map_err(err)?;
        tx.execute("CREATE TABLE IF NOT EXISTS watchfire_schema (version BIGINT NOT NULL)")
            .await
            .map_err(err)?;
        for stmt in schema::migration(kind, i) {
            tx.execute(stmt.as_str()).await.map_err(err)?;
        }
        sqlx::query("INSERT INTO watchfire_schema (version) VALUES ($1)")
            .bind(i as i64 + 1)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
    }
    Ok(())
}

/// The store error a driver error means, naming `place` (never with a password).
pub fn classify(e: sqlx::Error, place: &Place) -> StoreError {
    let shown = place.describe();
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match place.kind() {
                Kind::Sqlite => match code.parse::<i32>().map(|c| c & 0xff) {
                    Ok(8) => return StoreError::ReadOnly { place: shown },
                    Ok(13) => return StoreError::Full { place: shown },
                    Ok(26) => return StoreError::NotADatabase { place: shown },
                    _ => {}
                },
                Kind::Postgres => match code.as_str() {
                    "28P01" | "28000" => return StoreError::Auth { place: shown },
                    "42501" => {
                        return StoreError::Permission {
                            place: shown,
                            detail: db.message().to_string(),
                        }
                    }
                    _ => {}
                },
            }
        }
        sqlx::Error::Io(io) if place.kind() == Kind::Postgres => {
            return StoreError::Unreachable {
                place: shown,
                reason: io.to_string(),
            }
        }
        sqlx::Error::Configuration(c) => {
            return StoreError::BadUrl {
                url: shown,
                reason: crate::redact::urls_in(&c.to_string()).into_owned(),
            }
        }
        _ => {}
    }
    StoreError::Backend {
        place: shown,
        source: e,
    }
}
