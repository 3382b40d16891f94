//! What redb's errors say about a database file, for the two databases jasper keeps in redb:
//! the relay's index (`relay::store`) and the client's (`client::db`).

/// Whether redb could not open a file because it is damaged or not a redb database at all:
/// no retry helps, and the error should say what to do with the file.
pub fn is_damaged(e: &redb::DatabaseError) -> bool {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) => true,
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            io.kind() == std::io::ErrorKind::InvalidData
        }
        _ => false,
    }
}
