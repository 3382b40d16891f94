//! What redb's errors say about a database file, for the two databases jasper keeps in redb:
//! the relay's index (`relay::store`) and the client's (`client::db`); and the private
//! directories the services keep their data in.

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

/// Creates `dir` (and its parents) if missing; a directory made here is its owner's alone
/// (0700), whatever the umask: a relay's index names who receives what, and the STUN service's
/// directory holds its TLS key. An existing directory is left as the operator set it.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    #[cfg(unix)]
    #[test]
    fn a_directory_made_for_data_is_private_and_an_existing_one_is_left_alone() {
        use std::os::unix::fs::PermissionsExt as _;
        let base = tempfile::tempdir().unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let made = base.path().join("a/b");
        super::create_private_dir(&made).unwrap();
        assert_eq!(mode(&made), 0o700);
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o750)).unwrap();
        super::create_private_dir(&made).unwrap();
        assert_eq!(mode(&made), 0o750, "the operator's choice stands");
    }
}
